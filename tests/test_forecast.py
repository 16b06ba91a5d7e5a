"""forecast.py and the Forecaster API against the trainer: same forecasts, same test metrics, clean refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, reset_accelerate, run_cli, synthetic_frame

COLUMNS = ["a", "b", "OT"]
SHORT = ["--train_epochs", "1", "--max_train_steps", "20"]


def _train(folder: Path, frame: pd.DataFrame, *extra: str) -> tuple[Path, dict]:
    frame.to_csv(folder / "series.csv", index=False)
    code, result = run_cli(["--data", "custom", "--root_path", str(folder), "--data_path", "series.csv", *TINY,
                            *SHORT, *extra], folder)
    assert code == 0
    return Path(result["checkpoint_absolute"]).parents[2] / "results" / result["setting"], result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny multivariate run on an hourly file: (run folder, results.json, the file as a frame)."""
    folder = tmp_path_factory.mktemp("forecast")
    frame = synthetic_frame(1500, COLUMNS)
    run, result = _train(folder, frame, "--features", "M")
    return run, result, frame


def _forecast(argv: list[str]) -> int:
    import forecast

    return forecast.main(argv)


def test_last_test_window_matches_the_trainers_forecast(trained):
    """The trainer's own test forward for the last test window (every variable) against Forecaster.predict on the
    rows before that window's target, both in data units."""
    from timellm_launcher.engine.config import Config
    from timellm_launcher.engine.evaluate.loop import forecast
    from timellm_launcher.engine.forecast.forecaster import Forecaster
    from timellm_launcher.engine.model_io import load_weights
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.trainer import Trainer
    from timellm_launcher.models.attention import eval_attention

    run, result, frame = trained
    cfg = Config(**{**result["config"], "is_training": 0})
    reset_accelerate()
    trainer = Trainer(cfg, build_accelerator(cfg), 0)
    load_weights(trainer.setup.raw_model, trainer.best_path)
    data = trainer.setup.data
    test = data.datasets["test"]
    last = [v * test.n_windows + test.n_windows - 1 for v in range(test.n_vars)]
    trainer.setup.model.eval()
    with torch.inference_mode(), eval_attention():
        scaled = forecast(trainer.setup.model, test.__getitems__(last))[..., 0].T.numpy()  # [pred_len, vars]
    expected = scaled * data.std + data.mean

    end = data.borders.of("test")[1] - cfg.pred_len
    predicted = Forecaster.load(run).predict(frame.iloc[:end])
    assert list(predicted.columns) == ["date", *COLUMNS]
    np.testing.assert_allclose(predicted[COLUMNS].to_numpy(), expected, atol=1e-5, rtol=0)
    assert predicted["date"].iloc[0] == pd.Timestamp(frame["date"].iloc[end])


def test_rolling_over_the_test_split_gives_the_test_metrics(trained, tmp_path):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    run, result, frame = trained
    a, b = result["data"]["borders"]["test"]
    scored = Forecaster.load(run).predict(frame.iloc[a:b], rolling=True)
    metrics = scored.attrs["metrics"]
    assert metrics["mse"] == pytest.approx(result["metrics"]["test"]["mse"], rel=1e-5)
    assert metrics["mae"] == pytest.approx(result["metrics"]["test"]["mae"], rel=1e-5)
    assert metrics["windows"] * len(COLUMNS) == result["metrics"]["test"]["samples"]
    for name, base in result["metrics"]["test"]["baselines"].items():
        if name in metrics["baselines"]:  # the linear map needs the train split, which rolling does not see
            assert metrics["baselines"][name]["mse"] == pytest.approx(base["mse"], rel=1e-6)
    truth = scored[COLUMNS].to_numpy()
    rows = frame.iloc[a:b][COLUMNS].to_numpy()
    pred_len = result["config"]["pred_len"]
    np.testing.assert_allclose(truth[:pred_len], rows[result["config"]["seq_len"]:][:pred_len])
    for column in COLUMNS:
        mse_data = np.mean((scored[f"{column}_forecast"].to_numpy() - scored[column].to_numpy()) ** 2)
        assert metrics["data_units"][column]["mse"] == pytest.approx(mse_data, rel=1e-6)


def test_cli_writes_what_the_api_returns(trained, tmp_path, capsys):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    run, _, frame = trained
    frame.to_csv(tmp_path / "new.csv", index=False)
    out, plot = tmp_path / "out.csv", tmp_path / "out.png"
    assert _forecast(["--run", str(run / "results.json"), "--data_path", str(tmp_path / "new.csv"),
                      "--output", str(out), "--plot", str(plot)]) == 0
    written = pd.read_csv(out)
    expected = Forecaster.load(run).predict(frame)
    np.testing.assert_allclose(written[COLUMNS].to_numpy(), expected[COLUMNS].to_numpy(), rtol=1e-12)
    assert list(written["date"]) == [str(d) for d in expected["date"]]
    assert plot.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "forecast: 12 steps of a, b, OT" in printed and str(out) in printed

    assert _forecast(["--run", str(run), "--rolling"]) == 0  # the training file, output in the run folder
    assert (run / "rolling_series.csv").is_file()
    assert "(scaled, as results.json reports)" in capsys.readouterr().out


@pytest.mark.parametrize("freq,features", [("h", "S"), ("D", "MS"), ("15min", "M")])
def test_timestamps_continue_the_data_frequency(tmp_path, freq, features):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    frame = synthetic_frame(700, COLUMNS, freq=freq)
    run, result = _train(tmp_path, frame, "--features", features)
    assert result["data"]["input"]["freq"] == pd.tseries.frequencies.to_offset(freq).freqstr
    future = Forecaster.load(run).predict(frame)
    last = pd.Timestamp(frame["date"].iloc[-1])
    step = pd.tseries.frequencies.to_offset(freq)
    assert list(future["date"]) == [last + step * (i + 1) for i in range(12)]
    assert list(future.columns) == (["date", "OT"] if features != "M" else ["date", *COLUMNS])


def test_two_process_zero2_checkpoint_is_tested_in_test_distributed():
    """Kept beside the others for the reader: tests/test_distributed.py forecasts its 2-process ZeRO-2 run."""
    source = (Path(__file__).parent / "test_distributed.py").read_text()
    assert "Forecaster.load" in source


# ------------------------------------------------------------------ bad input
def _refused(argv: list[str], run: Path, capsys) -> str:
    before = sorted(p.name for p in run.iterdir())
    assert _forecast(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    return err


def _file_case(trained, tmp_path, capsys, frame: pd.DataFrame, *extra: str) -> str:
    run = trained[0]
    frame.to_csv(tmp_path / "bad.csv", index=False)
    return _refused(["--run", str(run), "--data_path", str(tmp_path / "bad.csv"), *extra], run, capsys)


def test_missing_column_is_named(trained, tmp_path, capsys):
    err = _file_case(trained, tmp_path, capsys, trained[2].drop(columns=["b"]))
    assert "missing column(s) b" in err


def test_columns_in_another_order_are_named(trained, tmp_path, capsys):
    err = _file_case(trained, tmp_path, capsys, trained[2][["date", "b", "a", "OT"]])
    assert "another order" in err and "b, a, OT" in err and "a, b, OT" in err


def test_too_few_rows(trained, tmp_path, capsys):
    assert "give at least 48" in _file_case(trained, tmp_path, capsys, trained[2].iloc[:30])
    assert "--rolling needs at least" in _file_case(trained, tmp_path, capsys, trained[2].iloc[:50], "--rolling")


def test_nan_in_the_input_honours_fillna(trained, tmp_path, capsys):
    frame = trained[2].copy()
    frame.loc[len(frame) - 3, "a"] = np.nan
    err = _file_case(trained, tmp_path, capsys, frame, "--fillna", "none")
    assert "NaN/inf" in err and "'a': 1" in err
    frame.to_csv(tmp_path / "gap.csv", index=False)
    assert _forecast(["--run", str(trained[0]), "--data_path", str(tmp_path / "gap.csv"), "--fillna", "ffill",
                      "--output", str(tmp_path / "filled.csv")]) == 0


def test_dates_not_increasing_or_off_frequency(trained, tmp_path, capsys):
    frame = trained[2]
    swapped = frame.copy()
    swapped.loc[[100, 101], "date"] = swapped.loc[[101, 100], "date"].to_numpy()
    assert "line 103" in _file_case(trained, tmp_path, capsys, swapped) and "must increase" in \
        _file_case(trained, tmp_path, capsys, swapped)
    gap = frame.drop(index=len(frame) - 5)
    err = _file_case(trained, tmp_path, capsys, gap)
    assert "is not one h step after" in err and f"line {len(frame) - 5 + 2}" in err
    daily = frame.copy()
    daily["date"] = pd.date_range("2020-01-01", periods=len(frame), freq="D").strftime("%Y-%m-%d")
    assert "sampled every h" in _file_case(trained, tmp_path, capsys, daily)


def test_run_without_checkpoint_or_with_a_mismatched_one(trained, tmp_path, capsys):
    run, result, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    moved = json.loads((copy / "results.json").read_text())
    moved["checkpoint"] = moved["checkpoint_absolute"] = str(tmp_path / "nowhere" / "best.safetensors")
    (copy / "results.json").write_text(json.dumps(moved))
    assert "--checkpoint PATH" in _refused(["--run", str(copy)], copy, capsys)

    other = {**moved, "config": {**moved["config"], "d_model": 16},
             "checkpoint_absolute": result["checkpoint_absolute"]}
    (copy / "results.json").write_text(json.dumps(other))
    assert "the model expects" in _refused(["--run", str(copy)], copy, capsys)

    old = {k: v for k, v in result.items()}
    old["data"] = {k: v for k, v in result["data"].items() if k != "input"}
    (copy / "results.json").write_text(json.dumps(old))
    assert "written before" in _refused(["--run", str(copy)], copy, capsys)

    assert "no results.json" in _refused(["--run", str(tmp_path / "nothing")], copy, capsys)


def test_damaged_checkpoint_is_named(trained, tmp_path, capsys):
    run, result, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    damaged = tmp_path / "best.safetensors"
    damaged.write_bytes(Path(result["checkpoint_absolute"]).read_bytes()[:1000])
    (copy / "results.json").write_text(json.dumps({**result, "checkpoint": str(damaged),
                                                   "checkpoint_absolute": str(damaged)}))
    assert str(damaged) in _refused(["--run", str(copy)], copy, capsys)


def test_unwritable_output_is_refused_before_forecasting(trained, tmp_path, capsys):
    run = trained[0]
    assert "does not exist" in _refused(["--run", str(run), "--output", str(tmp_path / "no" / "f.csv")], run, capsys)
    assert "is a folder" in _refused(["--run", str(run), "--output", str(tmp_path)], run, capsys)


def test_outputs_never_overwrite_the_run_or_the_input(trained, tmp_path, capsys):
    run, _, frame = trained
    frame.to_csv(tmp_path / "new.csv", index=False)
    data = ["--data_path", str(tmp_path / "new.csv")]
    assert "run's records" in _refused(["--run", str(run), *data, "--output", str(run / "results.json")], run, capsys)
    assert "run's records" in _refused(["--run", str(run), *data, "--output", str(tmp_path / "new.csv")], run, capsys)
    same = str(tmp_path / "same.png")
    assert "run's records" in _refused(["--run", str(run), *data, "--output", same, "--plot", same], run, capsys)
    assert "picture file" in _refused(["--run", str(run), *data, "--plot", str(tmp_path / "p.txt")], run, capsys)
    assert json.loads((run / "results.json").read_text())["setting"] == run.name


def test_a_fixed_day_of_the_month_continues_on_that_day(tmp_path):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    frame = synthetic_frame(400, COLUMNS, freq="MS")
    frame["date"] = (pd.to_datetime(frame["date"]) + pd.Timedelta(days=14)).dt.strftime("%Y-%m-%d")  # the 15th
    run, result = _train(tmp_path, frame, "--features", "S")
    assert result["data"]["input"]["freq"] == "months=1" and result["data"]["input"]["regular"]
    future = Forecaster.load(run).predict(frame)
    assert all(d.day == 15 for d in future["date"]) and future["date"].iloc[0] == pd.Timestamp("2049-11-15")


# ------------------------------------------------------------------------------------------ bounded backtests
def test_window_starts_count_back_from_the_last_window():
    from timellm_launcher.engine.forecast.backtest import window_starts

    assert window_starts(10, 0, 1).tolist() == list(range(10))
    assert window_starts(10, 3, 4).tolist() == [1, 5, 9]
    assert window_starts(10, 0, 4, first=2).tolist() == [5, 9]


def test_backtest_takes_the_last_windows_step_size_apart(trained):
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    run, result, frame = trained
    scored = Forecaster.load(run).predict(frame, rolling=True, n_windows=5, step_size=3)
    pred_len, seq_len = result["config"]["pred_len"], result["config"]["seq_len"]
    cutoffs = pd.to_datetime(scored["cutoff"].unique())
    dates = pd.to_datetime(frame["date"])
    assert scored.attrs["metrics"]["windows"] == 5 and len(scored) == 5 * pred_len
    assert cutoffs[-1] == dates.iloc[-1 - pred_len]  # the last complete window
    assert list(np.diff(cutoffs) / pd.Timedelta(hours=1)) == [3, 3, 3, 3]
    assert len(dates) - 1 - pred_len - 12 >= seq_len - 1


def test_test_only_backtest_scores_the_test_windows(trained, tmp_path, capsys):
    run, result, _ = trained
    out = tmp_path / "bt.csv"
    assert _forecast(["--run", str(run), "--rolling", "--test_only", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    test = result["metrics"]["test"]
    assert f"mse {test['mse']:.4f}  mae {test['mae']:.4f} (scaled" in printed
    written = pd.read_csv(out)
    assert written["cutoff"].nunique() * len(COLUMNS) == test["samples"]


def test_backtest_memory_stays_flat_as_the_file_grows(trained, tmp_path):
    """A streamed backtest's peak resident set over a 10x longer file grows by little more than the file."""
    from benchmarks.backtest_memory import backtest_peak_mb

    run = trained[0]
    peaks = []
    for rows in (4000, 40000):
        synthetic_frame(rows, COLUMNS, seed=1).to_csv(tmp_path / f"f{rows}.csv", index=False)
        peaks.append(backtest_peak_mb(run, tmp_path / f"f{rows}.csv", tmp_path / f"out{rows}.csv")[0])
    assert peaks[1] - peaks[0] < 40, peaks  # the whole output of the longer file would be ~100 MB in memory
