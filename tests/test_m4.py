"""M4: file layouts, training windows, SMAPE/MASE/OWA and Naive2 on known values, a short-term run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli
from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.m4 import PATTERNS, M4TrainWindows, build_m4_data, load_pattern
from timellm_launcher.data_provider.synthetic import write_m4
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.evaluate.m4_metrics import (
    autocorrelation,
    is_seasonal,
    mase_per_series,
    naive2,
    owa,
    score_pattern,
    smape_per_series,
    summarize_patterns,
)
from timellm_launcher.engine.report.summarize import main as summarize_main
from timellm_launcher.engine.train.losses import mase as mase_loss
from timellm_launcher.engine.train.losses import smape as smape_loss


@pytest.fixture(scope="module")
def m4_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("m4")
    write_m4(root, per_pattern=24, seed=1)
    return root


def test_validation_horizons_are_held_out_of_training(m4_root):
    data = build_m4_data(str(m4_root), "Monthly", seq_len=36, pred_len=18)
    windows, val = data.datasets["train"], data.datasets["val"]
    assert len(val) == len(data.train_series)
    held_out = {tuple(np.round(s[-18:], 6)) for s in data.train_series}
    np.testing.assert_allclose(val.batch["y"][:, :, 0].numpy(), np.stack([s[-18:] for s in data.train_series]),
                               rtol=1e-6)
    torch.manual_seed(0)
    for _ in range(20):  # every random cut of every series, many times: never the validated horizon
        for index in range(len(windows)):
            target = windows.__getitems__([index])["y"][0, :, 0].double().numpy()
            assert tuple(np.round(target, 6)) not in held_out
    # what training may see of a series ends where its validation horizon starts
    assert all(len(t) == len(s) - 18 for t, s in zip(windows.series, data.train_series, strict=True))


def test_series_too_short_to_train_on_after_the_hold_out_are_validated_only(tmp_path):
    train = [np.arange(1.0, 17.0), np.arange(1.0, 30.0)]  # 16 values: one horizon of input, one held out
    test = [np.arange(17.0, 25.0), np.arange(30.0, 38.0)]
    pd.DataFrame([["Q1", *train[0]], ["Q2", *train[1]]]).to_csv(tmp_path / "Quarterly-train.csv", index=False)
    pd.DataFrame([["Q1", *test[0]], ["Q2", *test[1]]]).to_csv(tmp_path / "Quarterly-test.csv", index=False)
    data = build_m4_data(str(tmp_path), "Quarterly", seq_len=16, pred_len=8)
    assert len(data.datasets["train"]) == 1 and len(data.datasets["val"]) == 2 and len(data.datasets["test"]) == 2


def test_official_naive2_forecasts_are_used_when_shipped(tmp_path):
    train = [100 + np.arange(30.0), 50 + np.arange(40.0)]
    test = [np.full(8, 131.0), np.full(8, 91.0)]
    pd.DataFrame([["Q1", *train[0]], ["Q2", *train[1]]]).to_csv(tmp_path / "Quarterly-train.csv", index=False)
    pd.DataFrame([["Q1", *test[0]], ["Q2", *test[1]]]).to_csv(tmp_path / "Quarterly-test.csv", index=False)
    assert build_m4_data(str(tmp_path), "Quarterly", seq_len=16, pred_len=8).naive2 is None
    official = pd.DataFrame([["Y1", *range(6)], ["Q2", *np.full(48, 2.0)], ["Q1", *np.full(48, 1.0)]])
    official.columns = ["id", *[f"F{i}" for i in range(1, 49)]][:official.shape[1]]
    official.to_csv(tmp_path / "submission-Naive2.csv", index=False)
    data = build_m4_data(str(tmp_path), "Quarterly", seq_len=16, pred_len=8)
    np.testing.assert_allclose(data.naive2, [[1.0] * 8, [2.0] * 8])  # by id, not by row
    assert data.summary()["naive2"] == "submission-Naive2.csv"
    scores = score_pattern(np.stack(test), np.stack(test), data.train_series, 4, data.naive2)
    assert scores["naive2_smape"] == pytest.approx(np.mean([200 * 130 / 132, 200 * 89 / 93]))


def test_seasonality_test_squares_every_autocorrelation():
    # an alternating series with a weak lag-4 echo: r_1 is strongly negative, so adding it unsquared would lower the
    # limit below |r_4| and call the series seasonal; Bartlett's rule (all squared) does not
    rng = np.random.default_rng(0)
    history = np.tile([1.0, -1.0], 12) + 0.3 * np.tile([1.0, 0.0, 0.0, 0.0], 6) + rng.normal(0, 1, 24) + 100
    r = [autocorrelation(history, k) for k in range(1, 5)]
    squared = 1.645 * np.sqrt((1 + 2 * (r[0] ** 2 + r[1] ** 2 + r[2] ** 2)) / 24)
    unsquared = 1.645 * np.sqrt((1 + 2 * (r[0] + r[1] ** 2 + r[2] ** 2)) / 24)
    assert unsquared < abs(r[3]) < squared  # the case where the two rules disagree
    assert not is_seasonal(history, 4)
    np.testing.assert_allclose(naive2(history, 8, 4), [history[-1]] * 8)


def test_npz_and_csv_layouts_hold_the_same_series(m4_root, tmp_path):
    write_m4(tmp_path, per_pattern=24, seed=1, layout="csv")
    for pattern in ("Yearly", "Hourly"):
        train_npz, test_npz, _, _ = load_pattern(str(m4_root), pattern)
        train_csv, test_csv, _, _ = load_pattern(str(tmp_path), pattern)
        assert len(train_npz) == len(train_csv) == 24
        for a, b in zip(train_npz + test_npz, train_csv + test_csv, strict=True):
            np.testing.assert_allclose(a, b)
        assert all(len(t) == PATTERNS[pattern].horizon for t in test_npz)


def test_missing_files_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no M4 files under --root_path"):
        load_pattern(str(tmp_path), "Yearly")
    (tmp_path / "m4").mkdir()
    (tmp_path / "m4" / "Yearly-train.csv").write_text("V1,V2\nY1,1.0\n")
    with pytest.raises(UserError, match="Monthly-train.csv"):
        load_pattern(str(tmp_path), "Monthly")


def test_m4_fixes_the_window_to_the_pattern():
    cfg = Config(task_name="short_term_forecast", data="m4", seasonal_patterns="Monthly", seq_len=512,
                 pred_len=96, patch_len=1, stride=1).validate()
    assert (cfg.pred_len, cfg.seq_len) == (18, 36)
    with pytest.raises(UserError, match="short_term_forecast goes with --data m4"):
        Config(task_name="short_term_forecast", data="ETTh1").validate()


def test_training_windows_cut_inside_the_history(m4_root):
    data = build_m4_data(str(m4_root), "Quarterly", seq_len=16, pred_len=8)
    windows: M4TrainWindows = data.datasets["train"]
    limit = int(PATTERNS["Quarterly"].history_size * 8)
    for index in range(len(windows)):
        series = windows.series[index]
        batch = windows.__getitems__([index])
        x, y, mask = batch["x"][0, :, 0].double().numpy(), batch["y"][0, :, 0].double().numpy(), batch["x_mask"][0]
        # the target is a whole horizon of the history, at one of its last `limit` admissible cuts
        starts = [c for c in range(len(series) - 8, max(0, len(series) - 8 - limit), -1)
                  if np.allclose(series[c:c + 8], y, rtol=1e-6)]
        assert starts, "target not found in the series"
        cut = starts[0]
        observed = int(mask.sum())
        assert observed == min(16, cut)
        np.testing.assert_allclose(x[16 - observed:], series[cut - observed:cut], rtol=1e-6)
        assert np.allclose(x[:16 - observed], series[cut - observed], rtol=1e-6)  # padded with the first value
    test = data.datasets["test"]
    assert len(test) == len(data.test_series)
    np.testing.assert_allclose(test[0]["y"][:, 0].numpy(), data.test_series[0], rtol=1e-6)


def test_smape_mase_owa_on_known_values():
    forecast, actual = np.array([[1.0, 2.0]]), np.array([[1.0, 4.0]])
    assert smape_per_series(forecast, actual) == pytest.approx([200 * (0 + 2 / 6) / 2])
    assert smape_per_series(np.zeros((1, 2)), np.zeros((1, 2))) == pytest.approx([0.0])  # 0/0 counts as 0
    history = [np.array([1.0, 2.0, 3.0, 4.0])]
    assert mase_per_series(np.array([[5.0, 8.0]]), np.array([[5.0, 6.0]]), history, 1) == pytest.approx([1.0])
    seasonal_history = [np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])]  # lag-2 differences all 1, lag-1 differences 1.6
    assert mase_per_series(np.array([[0.0]]), np.array([[2.0]]), seasonal_history, 2) == pytest.approx([2.0])
    assert owa(10.0, 1.0, 20.0, 2.0) == pytest.approx(0.5)
    # the training losses agree with the metrics
    import torch

    assert smape_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]])).item() == pytest.approx(100 / 3)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).unsqueeze(-1)
    assert mase_loss(torch.tensor([[[5.0], [8.0]]]), torch.tensor([[[5.0], [6.0]]]), x, 1).item() == pytest.approx(1)


def test_naive2_repeats_the_last_value_of_a_non_seasonal_history():
    history = np.array([3.0, 5.0, 4.0, 6.0, 5.0, 7.0])
    np.testing.assert_allclose(naive2(history, 4, 1), [7.0] * 4)
    assert not is_seasonal(history, 1)


def test_naive2_continues_a_multiplicative_season():
    season = np.array([0.8, 1.2, 0.9, 1.1])
    history = 100 * np.tile(season, 6)  # 24 quarters at level 100
    assert is_seasonal(history, 4)
    np.testing.assert_allclose(naive2(history, 6, 4), 100 * season[[0, 1, 2, 3, 0, 1]])
    short = history[:8]  # under 3 seasons: no seasonal adjustment
    assert not is_seasonal(short, 4)
    np.testing.assert_allclose(naive2(short, 2, 4), [short[-1]] * 2)


def test_a_model_that_forecasts_naive2_has_owa_one():
    rng = np.random.default_rng(0)
    histories = [100 + rng.normal(0, 5, 30) + 20 * np.sin(np.arange(30) * np.pi / 2) for _ in range(5)]
    actual = np.stack([100 + rng.normal(0, 5, 8) for _ in range(5)])
    benchmark = np.stack([naive2(h, 8, 4) for h in histories])
    scores = score_pattern(benchmark, actual, histories, 4)
    assert scores["owa"] == pytest.approx(1.0)
    assert scores["smape"] == pytest.approx(scores["naive2_smape"])


def test_summary_pools_others_and_average_by_series_count():
    def row(n, smape, mase):
        return {"series": n, "smape": smape, "mape": smape, "mase": mase, "naive2_smape": 2 * smape,
                "naive2_mase": 2 * mase, "owa": 0.5}
    by_pattern = {"Yearly": row(10, 10.0, 1.0), "Quarterly": row(10, 20.0, 2.0), "Monthly": row(20, 30.0, 3.0),
                  "Weekly": row(1, 40.0, 4.0), "Daily": row(1, 50.0, 5.0), "Hourly": row(2, 60.0, 6.0)}
    partial = summarize_patterns({k: by_pattern[k] for k in ("Yearly", "Monthly")})
    assert list(partial) == ["Yearly", "Monthly"]
    rows = summarize_patterns(by_pattern)
    assert rows["Others"]["series"] == 4
    assert rows["Others"]["smape"] == pytest.approx((40 + 50 + 2 * 60) / 4)
    assert rows["Average"]["smape"] == pytest.approx((100 + 200 + 600 + 40 + 50 + 120) / 44)
    assert rows["Average"]["owa"] == pytest.approx(0.5)


def test_short_term_run_end_to_end(m4_root, tmp_path, capsys):
    args = ["--task_name", "short_term_forecast", "--data", "m4", "--seasonal_patterns", "Yearly",
            "--root_path", str(m4_root), *TINY, "--patch_len", "4", "--stride", "2", "--batch_size", "8",
            "--loss", "SMAPE", "--train_epochs", "2", "--features", "S"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert (result["config"]["seq_len"], result["config"]["pred_len"]) == (12, 6)
    test = result["metrics"]["test"]
    assert test["series"] == test["samples"] == 24
    for key in ("smape", "mase", "owa", "naive2_smape", "naive2_mase"):
        assert np.isfinite(test[key]) and test[key] > 0
    assert test["owa"] == pytest.approx(0.5 * (test["smape"] / test["naive2_smape"]
                                               + test["mase"] / test["naive2_mase"]))
    assert result["history"][0]["train_loss"] > 0  # SMAPE, in percent
    out = capsys.readouterr().out
    assert "M4 Yearly: smape" in out

    assert summarize_main([str(tmp_path / "results")]) == 0
    table = capsys.readouterr().out
    assert "| Yearly | 24 |" in table and f"{test['owa']:.3f}" in table
    assert "missing Quarterly, Monthly, Weekly, Daily, Hourly" in table
    saved = json.loads(next((tmp_path / "results").glob("*/results.json")).read_text())
    assert saved["data"]["seasonal_pattern"] == "Yearly"
