"""Prediction intervals (--levels): the conformal quantile, calibrated coverage on noise of known size, and
forecast.py's lo/hi columns agreeing with the trainer's test coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli
from timellm_launcher.engine.evaluate.intervals import CoverageCounter, ResidualSample


def test_the_score_quantile_is_the_conformal_rank_of_the_normalised_residuals():
    sample = ResidualSample(expected_rows=99)
    order = torch.randperm(99)
    residuals = torch.arange(1.0, 100.0)[order]  # 1..99 in any order
    spreads = torch.full((99, 1, 1), 2.0)  # every window equally spread: floor 0.2, scale 2.2
    sample.update(residuals[:, None, None].expand(99, 2, 1).clone(), torch.zeros(99, 2, 1), spreads)
    calibration = sample.calibrate((80, 95, 99))
    assert calibration["floor"] == pytest.approx(0.2)
    assert calibration["half_widths"]["80"] == pytest.approx([80 / 2.2] * 2)  # ceil(100 * 0.80) = 80th smallest
    assert calibration["half_widths"]["95"] == pytest.approx([95 / 2.2] * 2)
    assert calibration["half_widths"]["99"] == pytest.approx([99 / 2.2] * 2)


def test_intervals_widen_with_the_input_spread():
    calibration = {"floor": 0.0, "half_widths": {"80": [1.0]}}
    counter = CoverageCounter(calibration, torch.device("cpu"))
    pred, true = torch.zeros(2, 1, 1), torch.full((2, 1, 1), 1.5)
    counter.update(pred, true, torch.tensor([[[1.0]], [[2.0]]]))  # half widths 1 and 2: only the second holds 1.5
    assert counter.compute()["80"]["coverage"] == 0.5
    assert counter.compute()["80"]["mean_width"] == pytest.approx(3.0)


def test_too_few_residuals_give_an_unbounded_interval():
    sample = ResidualSample(expected_rows=3)
    sample.update(torch.ones(3, 4, 1), torch.zeros(3, 4, 1), torch.ones(3, 1, 1))
    assert all(math.isinf(w) for w in sample.calibrate((80,))["half_widths"]["80"])  # needs ceil(4 * 0.8) = 4 of 3


def test_a_large_split_is_sampled_evenly_within_the_bound(monkeypatch):
    import timellm_launcher.engine.evaluate.intervals as intervals

    monkeypatch.setattr(intervals, "MAX_CALIBRATION_ROWS", 10)
    sample = ResidualSample(expected_rows=100)
    for start in range(0, 100, 7):  # uneven batches
        rows = torch.arange(start, min(start + 7, 100), dtype=torch.float32)
        sample.update(rows[:, None, None], torch.zeros(len(rows), 1, 1), torch.ones(len(rows), 1, 1))
    assert torch.cat(sample.rows).ravel().tolist() == [float(i) for i in range(0, 100, 10)]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """A daily-seasonal series plus Gaussian noise of known size, trained briefly with --levels 80 95."""
    folder = tmp_path_factory.mktemp("intervals")
    rng = np.random.default_rng(0)
    n = 12000
    t = np.arange(n)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
                          "OT": np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, n)})
    frame.to_csv(folder / "noisy.csv", index=False)
    code, result = run_cli(["--data", "custom", "--root_path", str(folder), "--data_path", "noisy.csv",
                            "--features", "S", *TINY, "--train_epochs", "1", "--max_train_steps", "60",
                            "--levels", "80", "95"], folder)
    assert code == 0
    return folder, frame, result


def test_coverage_on_noise_of_known_size_is_nominal(noisy_run):
    _, _, result = noisy_run
    coverage = result["metrics"]["test"]["intervals"]
    for level in ("80", "95"):
        assert coverage[level]["nominal"] == int(level) / 100
        assert abs(coverage[level]["coverage"] - int(level) / 100) < 0.03, coverage
    widths = result["intervals"]["half_widths"]
    assert all(a < b for a, b in zip(widths["80"], widths["95"], strict=True))


def test_forecast_columns_and_rolling_coverage_match_the_trainer(noisy_run):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    folder, frame, result = noisy_run
    run = folder / "results" / result["setting"]
    forecaster = Forecaster.load(run)
    future = forecaster.predict(frame)
    for level in (80, 95):
        assert (future[f"OT-lo-{level}"] < future["OT"]).all() and (future["OT"] < future[f"OT-hi-{level}"]).all()
    assert ((future["OT-hi-95"] - future["OT-lo-95"]) > (future["OT-hi-80"] - future["OT-lo-80"])).all()
    a, b = result["data"]["borders"]["test"]
    scored = forecaster.predict(frame.iloc[a:b], rolling=True)
    for level in ("80", "95"):
        assert scored.attrs["metrics"]["coverage"][level] == pytest.approx(
            result["metrics"]["test"]["intervals"][level]["coverage"], abs=1e-6)
        lo, hi = scored[f"OT_forecast-lo-{level}"], scored[f"OT_forecast-hi-{level}"]
        inside = (lo <= scored["OT"]) & (scored["OT"] <= hi)
        assert inside.mean() == pytest.approx(result["metrics"]["test"]["intervals"][level]["coverage"], abs=1e-3)


def test_bad_levels_are_refused_in_one_line(tmp_path, capsys):
    import run_main

    assert run_main.main(["--levels", "80", "120", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --levels") and "\n" not in err
