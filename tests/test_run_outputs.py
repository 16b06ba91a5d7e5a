"""What a user looks at after a run: the forecast PNG, the TensorBoard scalars; and a run forced into NaN."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY, read_scalars, run_cli, synthetic_frame
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.train.builders import build_training
from timellm_launcher.engine.train.loop import train_step
from timellm_launcher.engine.train.losses import build_loss
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> list[str]:
    """A 1,200-row hourly CSV (test split of ~230 windows) so the end-to-end runs here stay quick."""
    folder = tmp_path_factory.mktemp("small_csv")
    synthetic_frame(1200, ["load", "OT"]).to_csv(folder / "small.csv", index=False)
    return ["--data", "custom", "--root_path", str(folder), "--data_path", "small.csv", "--features", "S"]


@pytest.fixture(scope="module")
def wavelet_run(small_csv, tmp_path_factory):
    """A tiny run with both wavelet options, TensorBoard and a 3-window plot (2 epochs x 8 steps)."""
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    tmp = tmp_path_factory.mktemp("wavelet_run")
    args = [*small_csv, *TINY, "--train_epochs", "2", "--max_train_steps", "8", "--use_swt", "--swt_level", "2",
            "--use_dwt_prompt", "--prompt_compression", "detailed", "--log_with", "tensorboard", "--plot_windows", "3"]
    code, result = run_cli(args, tmp)
    return {"code": code, "result": result, "tmp": tmp}


def test_wavelet_run_finishes(wavelet_run):
    assert wavelet_run["code"] == 0
    result = wavelet_run["result"]
    assert math.isfinite(result["metrics"]["test"]["mse"])
    assert "_swtdb4L2_dwtdb4L3detailed_" in result["setting"]  # never collides with the plain run
    assert result["config"]["use_swt"] and result["config"]["use_dwt_prompt"]


def test_forecast_plot_is_a_real_image(wavelet_run):
    path = Path(wavelet_run["result"]["plot"])
    assert path == wavelet_run["tmp"] / "results" / wavelet_run["result"]["setting"] / "forecast.png"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width == 1200 and height == 100 * 3.0 * 3  # loss row + 2 rows of windows at 100 dpi
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colours) > 50  # curves drawn, not a blank canvas


def test_tensorboard_has_the_expected_scalars(wavelet_run):
    scalars = read_scalars(Path(wavelet_run["result"]["plot"]).parent / "tensorboard")
    for tag in ("train/loss", "train/lr", "train/samples_per_s", "val/mse", "val/mae", "train/bad_steps"):
        assert [step for step, _ in scalars[tag]] == [8, 16], tag
    history = wavelet_run["result"]["history"]
    assert scalars["val/mse"][1][1] == pytest.approx(history[1]["val_mse"], rel=1e-6)
    assert scalars["train/lr"][0][1] == pytest.approx(0.005)
    assert scalars["test/mse"][0][1] == pytest.approx(wavelet_run["result"]["metrics"]["test"]["mse"], rel=1e-6)


def test_plot_windows_zero_draws_nothing(small_csv, tmp_path):
    args = [*small_csv, *TINY, "--train_epochs", "1",
            "--max_train_steps", "2", "--plot_windows", "0"]
    code, result = run_cli(args, tmp_path)
    assert code == 0 and "plot" not in result
    assert not list(tmp_path.rglob("*.png"))


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
    loss = train_step(setup, bad, accelerator, cfg, build_loss("MSE"), guard)
    assert loss.item() == 0.0 and guard.bad_steps == 1 and guard.last_bad_loss == math.inf
    assert all(p.grad is None for p in setup.trainable)
    assert all(torch.equal(a, b) for a, b in zip(before, setup.trainable, strict=True))
    loss = train_step(setup, batch, accelerator, cfg, build_loss("MSE"), guard)
    assert math.isfinite(loss.item()) and guard.bad_steps == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, setup.trainable, strict=True))
