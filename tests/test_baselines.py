"""The baselines every run is scored beside: exact against a direct computation, fit on training rows only, and
written to results.json and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, run_cli, synthetic_frame
from timellm_launcher.data_provider.data_factory import build_data
from timellm_launcher.data_provider.seasonality import season_from_dates
from timellm_launcher.data_provider.windows import WindowDataset
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.evaluate.baselines import fit_linear, score_baselines, window_gram


def direct_scores(values: np.ndarray, borders: dict, seq_len: int, pred_len: int, season: int,
                  train_rows: tuple[int, int]) -> dict:
    """Every window of every variable by plain loops and numpy's least squares: what score_baselines must equal."""
    def windows(rows):
        a, b = rows
        xs, ys = [], []
        for column in range(values.shape[1]):
            for start in range(a, b - seq_len - pred_len + 1):
                xs.append(values[start:start + seq_len, column])
                ys.append(values[start + seq_len:start + seq_len + pred_len, column])
        return np.array(xs), np.array(ys)

    x_train, y_train = windows(train_rows)
    n = len(x_train)
    design = np.hstack([x_train, np.ones((n, 1))])
    penalty = np.diag([1e-3 * n] * seq_len + [0.0])
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ y_train)
    scores = {}
    for split, rows in borders.items():
        x, y = windows(rows)
        forecasts = {"last_value": np.repeat(x[:, -1:], pred_len, axis=1),
                     "seasonal_naive": np.stack([x[:, seq_len - season + h % season] for h in range(pred_len)], 1),
                     "linear": np.hstack([x, np.ones((len(x), 1))]) @ weights}
        scores[split] = {k: {"mse": float(np.mean((f - y) ** 2)), "mae": float(np.mean(np.abs(f - y)))}
                         for k, f in forecasts.items()}
    return scores


def test_window_gram_is_the_gram_matrix_of_every_window():
    series = np.random.default_rng(0).normal(size=40)
    windows = np.lib.stride_tricks.sliding_window_view(series, 7)
    gram, sums, count = window_gram(series, 7, np.array([0]), np.array([len(windows)]))
    np.testing.assert_allclose(gram, windows.T @ windows, rtol=1e-12)
    np.testing.assert_allclose(sums, windows.sum(axis=0), rtol=1e-12)
    assert count == len(windows)


def test_window_gram_over_runs_sums_only_the_windows_of_each_run():
    series = np.random.default_rng(0).normal(size=60)
    starts, counts = np.array([0, 20, 41]), np.array([5, 9, 3])  # three series' windows; none crosses a boundary
    windows = np.stack([series[s:s + 7] for a, n in zip(starts, counts, strict=True) for s in range(a, a + n)])
    gram, sums, count = window_gram(series, 7, starts, counts)
    np.testing.assert_allclose(gram, windows.T @ windows, rtol=1e-12)
    np.testing.assert_allclose(sums, windows.sum(axis=0), rtol=1e-12)
    assert count == 17


def test_baselines_equal_a_direct_computation(tmp_path):
    synthetic_frame(400, ["a", "OT"]).to_csv(tmp_path / "small.csv", index=False)
    cfg = Config(data="custom", root_path=str(tmp_path), data_path="small.csv", features="M", seq_len=36,
                 pred_len=12, patch_len=8, stride=8).validate()
    data = build_data(cfg.data_options())
    assert data.season_length == 24  # hourly data: one day
    got = score_baselines(data.datasets, 36, 12, data.season_length)
    scaled = (pd.read_csv(tmp_path / "small.csv")[["a", "OT"]].to_numpy() - data.mean) / data.std
    scaled = scaled.astype(np.float32).astype(np.float64)  # the datasets hold float32
    borders = {s: data.borders.of(s) for s in ("val", "test")}
    want = direct_scores(scaled, borders, 36, 12, 24, data.borders.of("train"))
    for split in ("val", "test"):
        assert got[split]["linear"]["samples"] == len(data.datasets[split])
        for name in ("last_value", "seasonal_naive", "linear"):
            for metric in ("mse", "mae"):
                assert got[split][name][metric] == pytest.approx(want[split][name][metric], rel=1e-6), (split, name)


def test_linear_baseline_never_sees_validation_or_test_rows():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 2))
    def fit(values: np.ndarray) -> np.ndarray:
        return fit_linear(WindowDataset(values, 24, 6, channel_independent=True), 24, 6)

    weights = fit(train)
    spoiled = np.vstack([train, rng.normal(size=(200, 2)) * 100])  # rows after the train split change nothing
    np.testing.assert_allclose(fit(spoiled[:300]), weights)
    assert not np.allclose(fit(spoiled), weights)


def test_seasonal_naive_is_left_out_when_the_season_does_not_fit(tmp_path):
    synthetic_frame(400, ["OT"]).to_csv(tmp_path / "small.csv", index=False)
    cfg = Config(data="custom", root_path=str(tmp_path), data_path="small.csv", seq_len=16, pred_len=8,
                 patch_len=8, stride=8).validate()
    data = build_data(cfg.data_options())
    got = score_baselines(data.datasets, 16, 8, data.season_length)
    assert set(got["test"]) == {"last_value", "linear"}  # a day of hourly data is longer than the window


@pytest.mark.parametrize(("freq", "season"), [("h", 24), ("30min", 48), ("15min", 96), ("D", 7), ("B", 5),
                                              ("W", 52), ("MS", 12), ("QS", 4), ("YS", 1)])
def test_season_from_the_sampling_step(freq, season):
    assert season_from_dates(pd.date_range("2020-01-06", periods=300, freq=freq)) == season


def test_run_writes_baselines_and_prints_the_skill(tmp_path, capsys):
    synthetic_frame(1200, ["load", "OT"]).to_csv(tmp_path / "small.csv", index=False)
    args = ["--data", "custom", "--root_path", str(tmp_path), "--data_path", "small.csv", "--features", "S",
            *TINY, "--train_epochs", "1", "--max_train_steps", "4", "--season_length", "12", "--plot_windows", "0"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    for split in ("val", "test"):
        baselines = result["metrics"][split]["baselines"]
        assert set(baselines) == {"last_value", "seasonal_naive", "linear"}
        for scores in baselines.values():
            assert scores["samples"] == result["data"]["samples"][split]
            assert np.isfinite(scores["mse"]) and np.isfinite(scores["mae"])
    test = result["metrics"]["test"]
    best = min(test["baselines"].values(), key=lambda b: b["mse"])
    out = capsys.readouterr().out
    assert "test baselines (mse / mae, same windows):" in out
    assert f"mse {1 - test['mse'] / best['mse']:+.1%}" in out
