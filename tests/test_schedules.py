"""--lradj, --optimizer, --scale_lr: the rate each epoch/step trains at is the one its definition gives."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY, run_cli
from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.train.builders import build_optimizer, decay_groups, effective_lr
from timellm_launcher.engine.train.schedules import (
    COS_ETA_MIN,
    ScheduleParams,
    build_scheduler,
    epoch_lr,
    observe_validation,
    parse_milestones,
)

FIVE = ScheduleParams(train_epochs=5)


@pytest.mark.parametrize("lradj,expected", [
    ("constant", [1e-3] * 5),
    ("type1", [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4]),
    ("type3", [1e-3, 1e-3, 1e-3, 1e-3, 9e-4]),
    ("type2", [1e-3, 1e-3, 5e-5, 5e-5, 1e-5]),
])
def test_epoch_tables(lradj, expected):
    got = [epoch_lr(lradj, e, 1e-3, FIVE) for e in range(1, 6)]
    assert got == pytest.approx(expected)


def test_cosine_over_the_run():
    lrs = [epoch_lr("COS", e, 1e-3, ScheduleParams(train_epochs=4)) for e in range(1, 6)]
    assert lrs[0] == 1e-3
    assert lrs[2] == pytest.approx(COS_ETA_MIN + (1e-3 - COS_ETA_MIN) / 2)
    assert lrs[4] == pytest.approx(COS_ETA_MIN)


def test_step_decays_every_step_size_epochs():
    params = ScheduleParams(train_epochs=7, lr_step_size=2, lr_gamma=0.1)
    got = [epoch_lr("step", e, 1.0, params) for e in range(1, 8)]
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01, 0.001])  # lr * gamma ** ((e - 1) // step_size)


def test_multistep_decays_after_each_milestone():
    params = ScheduleParams(train_epochs=8, lr_gamma=0.5, lr_milestones=parse_milestones("2, 5"))
    got = [epoch_lr("multistep", e, 1.0, params) for e in range(1, 9)]
    assert got == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])


@pytest.mark.parametrize("text", ["", "3,x", "5,3", "0,2", "2,2"])
def test_bad_milestones_are_user_errors(text):
    with pytest.raises(UserError, match="--lr_milestones"):
        parse_milestones(text)


def _per_step(lradj: str, epochs: int = 3, steps: int = 4, **params) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler(optimizer, lradj, 1e-3, steps, ScheduleParams(train_epochs=epochs, pct_start=0.25,
                                                                             **params))
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_epoch_schedule_holds_within_an_epoch():
    assert _per_step("type1") == pytest.approx([1e-3] * 8 + [5e-4] * 4)
    assert _per_step("step", lr_step_size=1, lr_gamma=0.1) == pytest.approx([1e-3] * 4 + [1e-4] * 4 + [1e-5] * 4)


def test_tst_is_one_cycle_per_step():
    lrs = _per_step("TST")
    peak = max(lrs)
    assert lrs.index(peak) == 2  # warm-up ends at step pct_start * total - 1 (torch OneCycleLR)
    assert math.isclose(peak, 1e-3, rel_tol=1e-6)
    assert lrs[0] == pytest.approx(1e-3 / 25) and lrs[-1] < lrs[0]


def test_cosine_warms_up_linearly_then_follows_a_half_cosine_per_step():
    lrs = _per_step("cosine", epochs=3, steps=4, warmup_epochs=1)  # 4 warm-up steps, then 8 cosine steps
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    span = 12 - 4 - 1
    expected = [COS_ETA_MIN + (1e-3 - COS_ETA_MIN) * (1 + math.cos(math.pi * k / span)) / 2 for k in range(8)]
    assert lrs[4:] == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(COS_ETA_MIN)


def test_cosine_without_warmup_starts_at_the_peak():
    lrs = _per_step("cosine", epochs=2, steps=3)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(COS_ETA_MIN)


def test_cosine_rejects_a_warmup_as_long_as_the_run():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(UserError, match="--warmup_epochs"):
        build_scheduler(optimizer, "cosine", 1e-3, 4, ScheduleParams(train_epochs=2, warmup_epochs=2))


def test_plateau_decays_on_each_validation_that_is_not_a_new_best():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler(optimizer, "plateau", 1e-3, 4, ScheduleParams(train_epochs=6, lr_gamma=0.5))
    rates = []
    for val_mse in [1.0, 0.8, 0.9, 0.85, 0.7, 0.7]:
        for _ in range(4):  # per-step calls do not move it
            optimizer.step()
            scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
        observe_validation(scheduler, val_mse)
    rates.append(optimizer.param_groups[0]["lr"])
    # epochs 1, 2: improvements; 3 (0.9) and 4 (0.85 > best 0.8) halve; 5 improves; 6 ties the best -> halves
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4])


def test_adamw_leaves_biases_and_norms_undecayed():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    model[2].weight.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = decay_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                                                   id(model[2].bias)}
    optimizer = build_optimizer(Config(optimizer="adamw", weight_decay=0.05), model, 1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    adam = build_optimizer(Config(optimizer="adam"), model, 1e-3)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 0


def test_adamw_decays_only_the_weights_it_should():
    """One AdamW step with zero gradients: decayed weights shrink by lr * wd, biases and norms stay."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(Config(optimizer="adamw", weight_decay=0.1), model, 0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = list(model.parameters())
    assert torch.allclose(after[0], before[0] * (1 - 0.5 * 0.1))
    for b, a in zip(before[1:], after[1:], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("batch,procs,accum,base,expected", [
    (32, 1, 1, 32, 1e-3),
    (32, 4, 1, 32, 2e-3),  # 4x the global batch -> 2x the rate
    (16, 2, 4, 32, 1e-3 * math.sqrt(128 / 32)),
    (8, 1, 1, 32, 5e-4),
])
def test_scale_lr_is_the_square_root_rule_on_the_global_batch(batch, procs, accum, base, expected):
    cfg = Config(learning_rate=1e-3, batch_size=batch, grad_accum=accum, base_batch_size=base, scale_lr=True)
    assert effective_lr(cfg, procs) == pytest.approx(expected)
    cfg.scale_lr = False
    assert effective_lr(cfg, procs) == 1e-3


def test_run_trains_at_the_logged_rates(ett_root, tmp_path):
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "3",
            "--max_train_steps", "3", "--lradj", "type1", "--learning_rate", "0.004", "--patience", "9"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert [h["lr"] for h in result["history"]] == pytest.approx([0.004, 0.004, 0.002])


def test_run_with_multistep_adamw_and_scale_lr(ett_root, tmp_path, capsys):
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "3",
            "--max_train_steps", "2", "--lradj", "multistep", "--lr_milestones", "2", "--lr_gamma", "0.1",
            "--learning_rate", "0.004", "--optimizer", "adamw", "--scale_lr", "--base_batch_size", "64",
            "--patience", "9"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    # TINY's batch 16 on one process: 0.004 * sqrt(16 / 64) = 0.002, then x0.1 after epoch 2
    assert [h["lr"] for h in result["history"]] == pytest.approx([0.002, 0.002, 0.0002])
    assert "--scale_lr: learning rate 0.004 x sqrt(global batch 16 / 64) = 0.002" in capsys.readouterr().out


def test_multistep_without_milestones_is_a_user_error(ett_root, tmp_path, capsys):
    code, _ = run_cli(["--data", "ETTh1", "--root_path", str(ett_root), *TINY, "--lradj", "multistep"], tmp_path)
    assert code == 2 and "--lr_milestones" in capsys.readouterr().err
