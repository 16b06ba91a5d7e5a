"""Many series in long format (--data long): windows never cross series, splits and scalers per series, baselines and
metrics over every series, and forecasts that come back in the same layout through the CLI and the Python API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli
from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataOptions, build_data
from timellm_launcher.data_provider.synthetic import long_panel
from timellm_launcher.engine.evaluate.baselines import score_baselines

SEQ, PRED = 48, 12
SHORT = ["--train_epochs", "1", "--max_train_steps", "20", "--plot_windows", "2"]


def _options(folder, file: str, **changes) -> DataOptions:
    return DataOptions(**{"data": "long", "root_path": str(folder), "data_path": file, "seq_len": SEQ,
                          "pred_len": PRED, **changes})


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    """30 series of 60 to 200 hourly points (some too short for a window in every split), rows shuffled."""
    folder = tmp_path_factory.mktemp("long")
    frame = long_panel(30, 60, 200, seed=4)
    frame.sample(frac=1.0, random_state=0).to_csv(folder / "panel.csv", index=False)
    return folder, frame


def _by_series(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {uid: group.sort_values("ds")["y"].to_numpy() for uid, group in frame.groupby("unique_id")}


def test_windows_never_cross_series_and_splits_are_each_series_last_points(panel_file):
    folder, frame = panel_file
    data = build_data(_options(folder, "panel.csv"))
    series = _by_series(frame)
    kept = [uid for uid, values in series.items() if len(values) >= SEQ + 3 * PRED]
    assert [str(i) for i in data.series_ids] == sorted(kept)
    assert any("dropped" in note and f"of {len(series)} series" in note for note in data.notes)
    for split, dataset in data.datasets.items():
        batch = dataset.__getitems__(list(range(len(dataset))))
        for i in range(len(dataset)):
            k = int(dataset.series[i])
            values = series[str(data.series_ids[k])]
            scaled = (values - data.mean[k]) / data.std[k]
            window = np.concatenate([batch["x"][i, :, 0].numpy(), batch["y"][i, :, 0].numpy()])
            where = [s for s in range(len(values) - SEQ - PRED + 1)
                     if np.allclose(scaled[s:s + SEQ + PRED], window, atol=1e-5)]
            assert where, (split, i)  # the window is a stretch of its own series
            start, length = where[0], len(values)
            if split == "test":
                assert start + SEQ + PRED == length  # the last pred_len points are the test targets
            elif split == "val":
                assert start + SEQ + PRED == length - PRED
            else:
                assert start + SEQ + PRED <= length - 2 * PRED  # training targets end before validation's
    windows_per_series = np.bincount(data.datasets["test"].series.numpy())
    assert (windows_per_series == 1).all()


def test_each_series_is_scaled_by_its_training_part_only(panel_file, tmp_path):
    folder, frame = panel_file
    data = build_data(_options(folder, "panel.csv"))
    for k, uid in enumerate(data.series_ids):
        train = _by_series(frame)[str(uid)][:-2 * PRED]
        assert data.mean[k] == pytest.approx(train.mean()) and data.std[k] == pytest.approx(train.std())
    spoiled = frame.copy()
    last = spoiled.groupby("unique_id")["ds"].transform("max") == spoiled["ds"]
    spoiled.loc[last, "y"] = 1e6  # a test point changes nothing the model trains on
    spoiled.to_parquet(tmp_path / "spoiled.parquet")
    other = build_data(_options(tmp_path, "spoiled.parquet"))
    np.testing.assert_array_equal(other.mean, data.mean)
    assert torch.equal(other.datasets["train"].__getitems__([0, 5, 9])["x"],
                       data.datasets["train"].__getitems__([0, 5, 9])["x"])


def test_parquet_and_shuffled_csv_give_the_same_windows(panel_file, tmp_path):
    folder, frame = panel_file
    frame.to_parquet(tmp_path / "panel.parquet")
    a, b = build_data(_options(folder, "panel.csv")), build_data(_options(tmp_path, "panel.parquet"))
    assert torch.equal(a.datasets["train"].values, b.datasets["train"].values)
    assert torch.equal(a.datasets["val"].starts, b.datasets["val"].starts)


def test_longer_holdouts_give_more_windows_per_series(panel_file):
    folder, _ = panel_file
    data = build_data(_options(folder, "panel.csv", val_size=2 * PRED, test_size=3 * PRED))
    per_series = np.bincount(data.datasets["test"].series.numpy())
    assert (per_series == 2 * PRED + 1).all()
    assert (np.bincount(data.datasets["val"].series.numpy()) == PRED + 1).all()


def test_baselines_pool_every_series_windows(panel_file):
    folder, _ = panel_file
    data = build_data(_options(folder, "panel.csv"))
    got = score_baselines(data.datasets, SEQ, PRED, data.season_length)
    train = data.datasets["train"].__getitems__(list(range(len(data.datasets["train"]))))
    inputs = np.hstack([train["x"][..., 0].double().numpy(), np.ones((len(train["x"]), 1))])
    outputs = train["y"][..., 0].double().numpy()
    ridge = 1e-3 * len(inputs) * np.diag([1.0] * SEQ + [0.0])
    weights = np.linalg.solve(inputs.T @ inputs + ridge, inputs.T @ outputs)
    test = data.datasets["test"].__getitems__(list(range(len(data.datasets["test"]))))
    x = np.hstack([test["x"][..., 0].double().numpy(), np.ones((len(test["x"]), 1))])
    want = float(np.mean((x @ weights - test["y"][..., 0].double().numpy()) ** 2))
    assert got["test"]["linear"]["mse"] == pytest.approx(want, rel=1e-6)
    assert got["test"]["linear"]["samples"] == len(data.series_ids)


def test_refusals_are_one_line(panel_file, tmp_path):
    folder, frame = panel_file
    with pytest.raises(UserError, match="none of its 30 series has the 400 points"):
        build_data(_options(folder, "panel.csv", seq_len=364))
    frame.rename(columns={"unique_id": "store"}).to_csv(tmp_path / "named.csv", index=False)
    with pytest.raises(UserError, match="missing 'unique_id'"):
        build_data(_options(tmp_path, "named.csv"))
    assert len(build_data(_options(tmp_path, "named.csv", id_col="store")).series_ids) > 0
    pd.concat([frame, frame.iloc[:1]]).to_csv(tmp_path / "repeated.csv", index=False)
    with pytest.raises(UserError, match="repeated timestamp"):
        build_data(_options(tmp_path, "repeated.csv"))
    holed = frame.copy()
    holed.loc[holed.index[5], "y"] = np.nan
    holed.to_csv(tmp_path / "holed.csv", index=False)
    with pytest.raises(UserError, match="--fillna"):
        build_data(_options(tmp_path, "holed.csv"))
    with pytest.raises(UserError, match="--features S"):
        build_data(_options(folder, "panel.csv", features="MS"))


def test_ffill_never_fills_from_another_series(tmp_path):
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 3,
                          "ds": list(pd.date_range("2024-01-01", periods=3, freq="D")) * 2,
                          "y": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0]})
    frame.to_csv(tmp_path / "gap.csv", index=False)
    from timellm_launcher.data_provider.long_format import read_long

    panel = read_long(tmp_path / "gap.csv", id_col="unique_id", time_col="ds", target="y", fillna="ffill")
    np.testing.assert_array_equal(panel.values, [1, 2, 3, 5, 5, 6])  # b's first point from b, not a's last


def test_ten_thousand_series_build_and_train(tmp_path):
    """The scale the issue names: 10,000 series of 200-400 points, array operations only (the benchmark times it)."""
    long_panel(10_000, 200, 400, seed=1).to_parquet(tmp_path / "big.parquet")
    data = build_data(_options(tmp_path, "big.parquet"))
    assert len(data.series_ids) == 10_000 and len(data.datasets["test"]) == 10_000
    test, train = data.datasets["test"], data.datasets["train"]
    ends = test.starts.numpy() + SEQ + PRED  # one test window per series, ending with it
    begins = np.concatenate([[0], ends[:-1]])
    starts, series = train.starts.numpy(), train.series.numpy()
    assert (starts >= begins[series]).all()  # no training window starts in the series before
    assert (starts + SEQ + PRED <= ends[series] - 2 * PRED).all()  # nor reaches its series' validation targets
    code, result = run_cli(["--data", "long", "--root_path", str(tmp_path), "--data_path", "big.parquet", *TINY,
                            "--train_epochs", "1", "--max_train_steps", "5", "--plot_windows", "0"], tmp_path)
    assert code == 0 and result["data"]["series"] == 10_000
    assert len(result["metrics"]["test"]["per_series"]["unique_id"]) == 10_000


@pytest.fixture(scope="module")
def long_run(panel_file, tmp_path_factory):
    folder, _ = panel_file
    out = tmp_path_factory.mktemp("long_run")
    code, result = run_cli(["--data", "long", "--root_path", str(folder), "--data_path", "panel.csv", *TINY, *SHORT,
                            "--levels", "80", "95"], out)
    assert code == 0
    return out, result


def test_run_scores_every_series_beside_the_baselines(long_run):
    _, result = long_run
    test = result["metrics"]["test"]
    per_series = test["per_series"]
    assert len(per_series["unique_id"]) == result["data"]["series"] == test["samples"]
    assert np.mean(per_series["mse"]) == pytest.approx(test["mse"], rel=1e-9)  # one window per series
    assert set(test["baselines"]) >= {"last_value", "linear"}
    assert set(test["intervals"]) == {"80", "95"}
    assert result["plot"].endswith("forecast.png")


def test_forecast_cli_returns_long_format_and_test_only_repeats_the_test_scores(long_run, panel_file, tmp_path):
    import forecast

    out, result = long_run
    folder, frame = panel_file
    run = out / "results" / result["setting"]
    assert forecast.main(["--run", str(run), "--output", str(tmp_path / "future.parquet")]) == 0
    future = pd.read_parquet(tmp_path / "future.parquet")
    assert list(future.columns) == ["unique_id", "ds", "TimeLLM", "TimeLLM-lo-80", "TimeLLM-hi-80",
                                    "TimeLLM-lo-95", "TimeLLM-hi-95"]
    assert future.groupby("unique_id").size().eq(PRED).all()
    last = frame.groupby("unique_id")["ds"].max()
    first_future = future.groupby("unique_id")["ds"].min()
    assert (first_future - last[first_future.index] == pd.Timedelta("1h")).all()
    assert (future["TimeLLM-lo-95"] <= future["TimeLLM-lo-80"]).all()
    assert forecast.main(["--run", str(run), "--rolling", "--test_only", "--output", str(tmp_path / "t.csv")]) == 0
    backtest = pd.read_csv(tmp_path / "t.csv")
    assert {"unique_id", "ds", "cutoff", "y", "TimeLLM"} <= set(backtest.columns)
    assert backtest["unique_id"].nunique() == result["data"]["series"]  # the series the run trained on
    per_series = result["metrics"]["test"]["per_series"]
    errors = (backtest["TimeLLM"] - backtest["y"]).abs().groupby(backtest["unique_id"]).mean()
    np.testing.assert_allclose(errors[per_series["unique_id"]], per_series["mae_data"], rtol=1e-4)


def test_api_equals_the_command_line_on_long_frames(long_run, panel_file, tmp_path):
    from timellm_launcher import TimeLLMForecaster

    _, result = long_run
    _, frame = panel_file
    flags = {TINY[i].removeprefix("--"): TINY[i + 1] for i in range(0, len(TINY), 2)}
    model = TimeLLMForecaster(**flags, train_epochs=1, max_train_steps=20, plot_windows=2, levels=(80, 95),
                              output_dir=str(tmp_path / "results"), checkpoints=str(tmp_path / "ck")).fit(frame)
    for key in ("mse", "mae"):
        assert model.result["metrics"]["test"][key] == pytest.approx(result["metrics"]["test"][key], rel=1e-6)
    future = model.predict(h=3)
    assert future.groupby("unique_id").size().eq(3).all() and "TimeLLM-hi-80" in future
    backtest = model.cross_validation(frame, n_windows=2, step_size=PRED)
    cutoffs = backtest.groupby("unique_id")["cutoff"].nunique()
    trained = result["metrics"]["test"]["per_series"]["unique_id"]
    assert cutoffs[trained].eq(2).all() and cutoffs.max() == 2  # shorter series roll over fewer windows
    assert backtest.attrs["metrics"]["series"] == len(cutoffs)
    unseen = frame.assign(unique_id="new_" + frame["unique_id"])
    fresh = model.predict(unseen)
    assert fresh["unique_id"].str.startswith("new_").all()
    assert any("never trained on" in note for note in fresh.attrs["notes"])


def test_two_processes_score_every_series_as_one_does(long_run, panel_file):
    """Per-series scores follow each window through gather_for_metrics: 2 processes with padded, uneven batches."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out, result = long_run
    folder, _ = panel_file
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    flags = ["--data", "long", "--root_path", str(folder), "--data_path", "panel.csv", *TINY, *SHORT, "--levels", "80",
             "95", "--is_training", "0", "--eval_batch_size", "7", "--output_dir", str(out / "results"),
             "--checkpoints", str(out / "checkpoints")]
    done = subprocess.run([accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "run_main.py", *flags],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    scored = json.loads((out / "results" / result["setting"] / "test_results.json").read_text())["metrics"]["test"]
    assert scored["per_series"] == result["metrics"]["test"]["per_series"]
    assert scored["intervals"] == result["metrics"]["test"]["intervals"]
