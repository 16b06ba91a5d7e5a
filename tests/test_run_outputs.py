"""What a user looks at after a run: the forecast PNG, the TensorBoard scalars."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from conftest import TINY, read_scalars, reset_accelerate, run_cli


@pytest.fixture(scope="module")
def wavelet_run(small_csv, tmp_path_factory):
    """A tiny run with both wavelet options, TensorBoard and a 3-window plot (2 epochs x 8 steps)."""
    reset_accelerate()
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
