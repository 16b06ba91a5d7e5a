"""Datasets: split borders, scaling, channel-independent windows, few-shot, and every bad-input error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ETT_COLUMNS, ROOT, synthetic_frame
from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataOptions, build_data, build_loaders
from timellm_launcher.data_provider.splits import compute_borders
from timellm_launcher.engine.config import Config


def test_ett_hour_borders():
    b = compute_borders("ett_hour", 17420, seq_len=96)
    assert b.train == (0, 8640) and b.val == (8640 - 96, 11520) and b.test == (11520 - 96, 14400)


def test_ett_minute_borders_are_four_times_hourly():
    b = compute_borders("ett_minute", 69680, seq_len=96)
    assert b.train == (0, 34560) and b.val == (34560 - 96, 46080) and b.test == (46080 - 96, 57600)


def test_custom_borders_70_10_20():
    b = compute_borders("ratio", 7588, seq_len=96)
    n_train, n_test = int(7588 * 0.7), int(7588 * 0.2)
    assert b.train == (0, n_train)
    assert b.val == (n_train - 96, 7588 - n_test)
    assert b.test == (7588 - n_test - 96, 7588)


def test_ett_sample_counts_and_channel_independence(ett_root):
    cfg = Config(data="ETTh1", root_path=str(ett_root), features="M", seq_len=96, pred_len=24)
    data = build_data(cfg.data_options())
    windows = {"train": 8640 - 96 - 24 + 1, "val": 2880 - 24 + 1, "test": 2880 - 24 + 1}
    for split, n in windows.items():
        assert len(data.datasets[split]) == n * 7
    ds = data.datasets["train"]
    frame = pd.read_csv(ett_root / "ETTh1.csv")
    scaled = (frame[ETT_COLUMNS].to_numpy() - data.mean) / data.std
    # sample index = variable * windows + start (variable-major, one variable per sample)
    variable, start = 3, 517
    sample = ds[variable * ds.n_windows + start]
    assert sample["x"].shape == (96, 1) and sample["y"].shape == (24, 1)
    np.testing.assert_allclose(sample["x"][:, 0].numpy(), scaled[start:start + 96, variable], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sample["y"][:, 0].numpy(), scaled[start + 96:start + 120, variable], rtol=1e-5,
                               atol=1e-5)


def test_scaler_fitted_on_train_rows_only(csv_dir):
    frame = synthetic_frame(2000, ["a", "OT"])
    frame.loc[1500:, ["a", "OT"]] += 1000.0  # a shift after the training rows must not move the scaler
    frame.to_csv(csv_dir / "shift.csv", index=False)
    data = build_data(DataOptions(data="custom", root_path=str(csv_dir), data_path="shift.csv", features="M",
                             seq_len=48, pred_len=12))
    train = frame[["a", "OT"]].to_numpy()[:1400]
    np.testing.assert_allclose(data.mean, train.mean(axis=0))
    np.testing.assert_allclose(data.std, train.std(axis=0))


def test_features_s_and_ms(ett_root):
    s = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="S", seq_len=96, pred_len=24))
    assert s.columns == ["OT"] and s.datasets["test"][0]["x"].shape == (96, 1)
    ms = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="MS", seq_len=96, pred_len=24))
    item = ms.datasets["test"][0]
    assert item["x"].shape == (96, 7) and item["y"].shape == (24, 1)
    assert ms.columns[-1] == "OT"
    np.testing.assert_array_equal(item["y"][:, 0].numpy(), ms.datasets["test"].values[96:120, -1].numpy())


def test_percent_shrinks_train_only(ett_root):
    full = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="S", seq_len=96, pred_len=24))
    few = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="S", seq_len=96, pred_len=24,
                            percent=10))
    assert len(few.datasets["train"]) == (8640 - 96) * 10 // 100 + 96 - 96 - 24 + 1
    assert len(few.datasets["val"]) == len(full.datasets["val"])
    assert len(few.datasets["test"]) == len(full.datasets["test"])
    np.testing.assert_allclose(few.mean, full.mean)  # scaler still sees the whole train split


def test_test_loader_keeps_every_sample(ett_root):
    cfg = Config(data="ETTh1", root_path=str(ett_root), features="S", seq_len=96, pred_len=24,
                 batch_size=32, eval_batch_size=100)
    data = build_data(cfg.data_options())
    loaders = build_loaders(data, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size)
    n_test = len(data.datasets["test"])
    assert n_test % 100 != 0  # a ragged last batch exists
    seen = torch.cat([b["x"] for b in loaders["test"]])
    assert len(seen) == n_test
    assert len(loaders["train"]) == len(data.datasets["train"]) // 32  # training drops the ragged batch


def test_vic_elec_embedded_dataset():
    data = build_data(DataOptions())
    assert data.columns == ["Demand"]
    assert len(data.datasets["test"]) == int(52608 * 0.2) - 48 + 1
    assert data.input["freq"] == "30min"


# ------------------------------------------------------------------ bad input
def _error(args: list[str], capsys) -> str:
    import run_main

    code = run_main.main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def bad_csvs(csv_dir):
    good = synthetic_frame(600, ["a", "OT"])
    good.to_csv(csv_dir / "good.csv", index=False)
    good.drop(columns=["OT"]).to_csv(csv_dir / "no_target.csv", index=False)
    good.assign(date="not a date").to_csv(csv_dir / "no_date.csv", index=False)
    good.assign(a="x").to_csv(csv_dir / "text.csv", index=False)
    nan = good.copy()
    nan.loc[[5, 9, 300], "OT"] = np.nan
    nan.loc[7, "a"] = np.inf
    nan.to_csv(csv_dir / "nan.csv", index=False)
    return csv_dir


def _custom(root, name, *extra):
    return ["--data", "custom", "--root_path", str(root), "--data_path", name, "--features", "M",
            "--seq_len", "48", "--pred_len", "12", *extra]


def test_missing_file(bad_csvs, capsys):
    assert "not found" in _error(_custom(bad_csvs, "absent.csv"), capsys)


def test_missing_target(bad_csvs, capsys):
    err = _error(_custom(bad_csvs, "no_target.csv"), capsys)
    assert "'OT'" in err and "--target" in err


def test_missing_date(bad_csvs, capsys):
    assert "must hold dates" in _error(_custom(bad_csvs, "no_date.csv"), capsys)


def test_non_numeric(bad_csvs, capsys):
    assert "non-numeric columns a" in _error(_custom(bad_csvs, "text.csv"), capsys)


def test_nan_reports_column_and_count(bad_csvs, capsys):
    err = _error(_custom(bad_csvs, "nan.csv"), capsys)
    assert "'OT': 3" in err and "'a': 1" in err and "--fillna" in err


@pytest.mark.parametrize("how", ["ffill", "zero"])
def test_fillna_fills(bad_csvs, how):
    data = build_data(DataOptions(data="custom", root_path=str(bad_csvs), data_path="nan.csv", features="M",
                             seq_len=48, pred_len=12, fillna=how))
    assert torch.isfinite(data.datasets["train"].values).all()


def test_split_too_short(bad_csvs, capsys):
    err = _error(_custom(bad_csvs, "good.csv", "--seq_len", "200", "--pred_len", "96"), capsys)
    assert "too short" in err and "--seq_len 200" in err


def test_patch_longer_than_window(bad_csvs, capsys):
    assert "--patch_len 64" in _error(_custom(bad_csvs, "good.csv", "--patch_len", "64"), capsys)


def test_unknown_data(capsys):
    err = _error(["--data", "ETTh9"], capsys)
    assert "--data 'ETTh9'" in err and "ETTh1" in err


def test_error_exit_code_and_no_traceback_in_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run_main.py"), "--data", "custom", "--root_path",
                           str(tmp_path), "--data_path", "nothing.csv"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: data file not found")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()


def test_bad_input_raises_user_error_in_library_use(bad_csvs):
    with pytest.raises(UserError):
        build_data(DataOptions(data="custom", root_path=str(bad_csvs), data_path="text.csv", features="M"))


def test_reference_script_flags_are_accepted():
    from timellm_launcher.engine.config import build_parser, config_from_args

    args = build_parser("t").parse_args(["--factor", "3", "--enc_in", "7", "--dec_in", "7", "--c_out", "7",
                                         "--e_layers", "2", "--d_layers", "1", "--embed", "timeF",
                                         "--label_len", "48", "--model_comment", "TimeLLM-ETTh1", "--freq", "h"])
    cfg = config_from_args(args)
    assert cfg.label_len == 48 and cfg.enc_in == 7
    assert not hasattr(cfg, "factor") and "factor" not in cfg.to_dict()  # accepted, ignored, not recorded


def test_numeric_first_column_is_not_a_date(csv_dir, capsys):
    synthetic_frame(600, ["a", "OT"]).assign(date=range(600)).to_csv(csv_dir / "idx.csv", index=False)
    assert "must hold dates, not numbers" in _error(_custom(csv_dir, "idx.csv"), capsys)


def test_header_only_csv(csv_dir, capsys):
    (csv_dir / "empty.csv").write_text("date,a,OT\n")
    assert "no data rows" in _error(_custom(csv_dir, "empty.csv"), capsys)


def test_all_nan_column_cannot_be_filled(csv_dir, capsys):
    synthetic_frame(600, ["a", "OT"]).assign(a=np.nan).to_csv(csv_dir / "hollow.csv", index=False)
    assert "hold no finite value" in _error(_custom(csv_dir, "hollow.csv", "--fillna", "ffill"), capsys)


@pytest.mark.parametrize("flag,value", [("--learning_rate", "nan"), ("--learning_rate", "inf"),
                                        ("--max_grad_norm", "nan")])
def test_non_finite_or_unknown_values(bad_csvs, capsys, flag, value):
    assert flag in _error(_custom(bad_csvs, "good.csv", flag, value), capsys)


def test_output_dir_that_cannot_exist(bad_csvs, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    err = _error([*_custom(bad_csvs, "good.csv"), "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "1",
                  "--llm_dim", "64", "--output_dir", str(tmp_path / "afile" / "x")], capsys)
    assert "--output_dir" in err and "is a file, not a folder" in err
