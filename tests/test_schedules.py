"""--lradj: the rate each epoch trains at is the one its definition gives, and the one the run logs."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY, run_cli
from engine.schedules import COS_ETA_MIN, build_scheduler, epoch_lr


@pytest.mark.parametrize("lradj,expected", [
    ("constant", [1e-3] * 5),
    ("type1", [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4]),
    ("type3", [1e-3, 1e-3, 1e-3, 1e-3, 9e-4]),
    ("type2", [1e-3, 1e-3, 5e-5, 5e-5, 1e-5]),
])
def test_epoch_tables(lradj, expected):
    got = [epoch_lr(lradj, e, 1e-3, 5) for e in range(1, 6)]
    assert got == pytest.approx(expected)


def test_cosine_over_the_run():
    lrs = [epoch_lr("COS", e, 1e-3, 4) for e in range(1, 6)]
    assert lrs[0] == 1e-3
    assert lrs[2] == pytest.approx(COS_ETA_MIN + (1e-3 - COS_ETA_MIN) / 2)
    assert lrs[4] == pytest.approx(COS_ETA_MIN)


def _per_step(lradj: str, epochs: int = 3, steps: int = 4) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler(optimizer, lradj, 1e-3, epochs, steps, pct_start=0.25)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_epoch_schedule_holds_within_an_epoch():
    assert _per_step("type1") == pytest.approx([1e-3] * 8 + [5e-4] * 4)


def test_tst_is_one_cycle_per_step():
    lrs = _per_step("TST")
    peak = max(lrs)
    assert lrs.index(peak) == 2  # warm-up ends at step pct_start * total - 1 (torch OneCycleLR)
    assert math.isclose(peak, 1e-3, rel_tol=1e-6)
    assert lrs[0] == pytest.approx(1e-3 / 25) and lrs[-1] < lrs[0]


def test_run_trains_at_the_logged_rates(ett_root, tmp_path):
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "3",
            "--max_train_steps", "3", "--lradj", "type1", "--learning_rate", "0.004", "--patience", "9"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert [h["lr"] for h in result["history"]] == pytest.approx([0.004, 0.004, 0.002])
