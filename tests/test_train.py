"""End-to-end CLI runs on ETTh1 (real when ../shared/data has it): learning, results, seeds, checkpoints; and
non-finite losses: a step skipped, a run stopped in one line, a diverged run never scoring an old checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import TINY, reset_accelerate, run_cli
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.train.builders import build_training
from timellm_launcher.engine.train.loop import train_step
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard


def test_run_finishes_with_finite_metrics(ett_run):
    assert ett_run["code"] == 0
    test = ett_run["result"]["metrics"]["test"]
    for key in ("mse", "mae", "rmse"):
        assert math.isfinite(test[key]) and test[key] > 0
    assert math.isclose(test["rmse"], math.sqrt(test["mse"]), rel_tol=1e-9)
    assert math.isfinite(ett_run["result"]["metrics"]["val"]["mse"])
    assert ett_run["result"]["params"]["trainable"] < ett_run["result"]["params"]["total"]


def test_loss_decreases_and_the_best_validation_is_kept(ett_run):
    """Whether validation still improves after epoch 1 at this size depends on the seed (it may overfit); what
    must hold is that training lowers the loss and the run keeps and reports its best validated epoch."""
    result = ett_run["result"]
    history = result["history"]
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    val = [h["val_mse"] for h in history]
    assert result["best_epoch"] == val.index(min(val)) + 1
    assert math.isclose(result["metrics"]["val"]["mse"], min(val), rel_tol=1e-6)


def test_every_test_sample_is_scored(ett_run):
    # ETTh1 test rows [11520-48, 14400): 2880 - 12 + 1 windows of the single OT variable
    assert ett_run["result"]["metrics"]["test"]["samples"] == 2880 - 12 + 1
    assert ett_run["result"]["data"]["samples"]["test"] == 2880 - 12 + 1


def test_results_table_line(ett_run):
    table = (ett_run["tmp"] / "results" / "result_long_term_forecast.txt").read_text()
    setting = ett_run["result"]["setting"]
    assert setting in table
    assert "_lr0.005_bs16_" in setting
    assert f"mse:{ett_run['result']['metrics']['test']['mse']}" in table


def test_checkpoint_holds_no_frozen_weights(ett_run):
    path = Path(ett_run["result"]["checkpoint_absolute"])
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        n_params = sum(f.get_tensor(k).numel() for k in keys)
    assert keys and not any(k.startswith("llm.") for k in keys)
    assert n_params == ett_run["result"]["params"]["trainable"]
    assert (path.parent / "last" / "model.safetensors").is_file()
    assert (path.parent / "last" / "training_state.json").is_file()


def test_same_seed_same_metrics(ett_run, tmp_path):
    code, again = run_cli(ett_run["args"], tmp_path)
    assert code == 0
    assert again["metrics"] == ett_run["result"]["metrics"]
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in ett_run["result"]["history"]]


def test_other_seed_other_metrics(ett_run, tmp_path):
    args = [a if a != "7" else "8" for a in ett_run["args"]]
    _, other = run_cli(args, tmp_path)
    assert other["metrics"]["test"]["mse"] != ett_run["result"]["metrics"]["test"]["mse"]


def test_test_only_reuses_the_checkpoint(ett_run):
    tmp = ett_run["tmp"]
    code, _ = run_cli([*ett_run["args"], "--is_training", "0"], tmp)
    assert code == 0
    import json

    folder = tmp / "results" / ett_run["result"]["setting"]
    scored = json.loads((folder / "test_results.json").read_text())
    assert scored["metrics"]["test"] == ett_run["result"]["metrics"]["test"]
    kept = json.loads((folder / "results.json").read_text())  # the training run's record is left as it was
    assert kept["history"] == ett_run["result"]["history"] and kept["metrics"]["val"]["mse"] is not None
    assert (tmp / "results" / "result_long_term_forecast.txt").read_text().count(ett_run["result"]["setting"]) == 1


def test_itr_repeats_with_consecutive_seeds(ett_root, tmp_path):
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "1",
            "--max_train_steps", "5", "--itr", "2", "--seed", "3"]
    code, _ = run_cli(args, tmp_path)
    assert code == 0
    import json

    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").glob("*/results.json"))]
    assert [r["seed"] for r in runs] == [3, 4]
    assert runs[0]["setting"].endswith("_0") and runs[1]["setting"].endswith("_1")


# ------------------------------------------------------------------ non-finite losses
def test_diverged_run_is_reported_and_never_scores_an_old_checkpoint(ett_run, capsys):
    """Same setting as the good run, whose best.safetensors exists: a diverged retrain must not score it."""
    import run_main

    reset_accelerate()
    args = [a if a != "0.005" else "1e30" for a in ett_run["args"]]  # same flags, an absurd learning rate
    args += ["--output_dir", str(ett_run["tmp"] / "diverged"), "--checkpoints", str(ett_run["tmp"] / "checkpoints")]
    code = run_main.main(args)
    err = capsys.readouterr().err
    if code == 0:  # the rate did not blow up the tiny model: nothing to check
        pytest.skip("no divergence")
    assert code == 2 and "training diverged" in err


def test_run_forced_into_nan_stops_with_one_line(small_csv, tmp_path, capsys):
    """A learning rate of 1e30 throws the weights to ~1e30 on the first step; every later loss overflows."""
    args = [*small_csv, *TINY, "--train_epochs", "1",
            "--max_train_steps", "20", "--learning_rate", "1e30", "--max_bad_steps", "3"]
    code, result = run_cli(args, tmp_path)
    err = capsys.readouterr()
    assert code == 2 and result is None
    lines = [line for line in err.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "stopped after 3 non-finite losses (--max_bad_steps 3)" in lines[0]
    assert "lower --learning_rate (1e+30)" in lines[0]
    assert err.out.count("non-finite loss") == 3 and "step skipped (3/3)" in err.out
    assert not list(tmp_path.rglob("best.safetensors"))


def test_a_non_finite_step_leaves_the_weights_untouched(ett_root):
    """An overflowing target (1e20 squared is inf in float32) makes the loss inf: no update, no gradients."""
    from accelerate import Accelerator

    cfg = Config(data="ETTh1", root_path=str(ett_root), features="S", llm_model="GPT2", llm_init="random",
                 llm_layers=1, llm_dim=64, num_tokens=50, d_model=8, d_ff=16, n_heads=2, seq_len=48, pred_len=12,
                 patch_len=8, stride=8, batch_size=4, max_bad_steps=5).validate()
    accelerator = Accelerator(cpu=True)
    setup = build_training(cfg, accelerator)
    guard = NonFiniteGuard(cfg, accelerator, setup.trainable)
    batch = next(iter(setup.loaders["train"]))
    before = [p.detach().clone() for p in setup.trainable]
    bad = {"x": batch["x"], "y": torch.full_like(batch["y"], 1e20)}
    loss = train_step(setup, bad, guard)
    assert loss.item() == 0.0 and guard.bad_steps == 1 and guard.last_bad_loss == math.inf
    assert all(p.grad is None for p in setup.trainable)
    assert all(torch.equal(a, b) for a, b in zip(before, setup.trainable, strict=True))
    loss = train_step(setup, batch, guard)
    assert math.isfinite(loss.item()) and guard.bad_steps == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, setup.trainable, strict=True))
