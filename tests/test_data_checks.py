"""Data a run must refuse or read right: values that would silently corrupt a metric, files in other
separators or encodings, calendars (daylight saving, day-first dates), backbones that are not there."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import custom_args, output_paths, refused, run_cli, synthetic_frame, write_series

SHORT = ["--train_epochs", "1", "--max_train_steps", "6"]


# ------------------------------------------------------------------ silent wrong results
@pytest.mark.parametrize("value", ["1e308", "-1e308", "inf"])
def test_overflowing_values_are_refused_with_the_column(tmp_path, frame, capsys, value):
    frame = frame.astype({"OT": object})
    frame.loc[20, "OT"] = value
    write_series(tmp_path, frame)
    err = refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys, written=tmp_path / "results")
    assert "OT" in err and ("overflow" in err or "NaN/inf" in err)


def test_values_beyond_float32_after_scaling_are_refused(tmp_path, frame, capsys):
    frame.loc[len(frame) - 3, "a"] = 1e45  # finite in float64, inf in the model's float32
    write_series(tmp_path, frame)
    err = refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys)
    assert "column(s) a" in err and "float32" in err


@pytest.mark.parametrize("how", ["swapped", "descending", "duplicated"])
def test_dates_out_of_order_are_refused_with_the_line(tmp_path, frame, capsys, how):
    if how == "swapped":
        frame.loc[[300, 301], "date"] = frame.loc[[301, 300], "date"].to_numpy()
        line = 303
    elif how == "descending":
        frame = frame.iloc[::-1]
        line = 3
    else:
        frame.loc[400, "date"] = frame.loc[399, "date"]
        line = 402
    write_series(tmp_path, frame)
    err = refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys)
    assert f"line {line}" in err and "dates must increase" in err

# ------------------------------------------------------------------ messages
def test_semicolon_separated_file_trains(tmp_path, frame):
    frame.to_csv(tmp_path / "series.csv", index=False, sep=";")
    code, result = run_cli([*custom_args(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["columns"] == ["a", "b", "OT"]


def test_decimal_commas_get_a_hint(tmp_path, frame, capsys):
    text = frame.round(3).to_csv(index=False, sep=";").replace(".", ",")
    (tmp_path / "series.csv").write_text(text)
    assert "decimal commas" in refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys)


def test_non_utf8_names_the_line(tmp_path, frame, capsys):
    data = frame.to_csv(index=False).encode()
    lines = data.split(b"\n")
    lines[41] = lines[41].replace(b"2016", b"2016\xe9", 1)
    (tmp_path / "series.csv").write_bytes(b"\n".join(lines))
    err = refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys)
    assert "line 42" in err and "UTF-8" in err


def test_unknown_backbone_with_random_init_does_not_suggest_random_init(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    args = [a if a != "GPT2" else "no-such/model" for a in custom_args(tmp_path)]
    err = refused([*args, *SHORT, *output_paths(tmp_path)], capsys)
    assert "--llm_init random:" in err and "or --llm_init random" not in err


def test_llm_path_with_random_init_uses_its_config(tmp_path, frame):
    from timellm_launcher.models.backbone import minilm_dir

    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *SHORT, "--llm_path", str(minilm_dir()), "--llm_dim", "0"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert result["model"]["llm_dim"] == 384  # MiniLM's width, not GPT-2's 768

# ------------------------------------------------------------------ calendars

def test_daylight_saving_offsets_become_one_utc_timeline(tmp_path, frame):
    local = pd.date_range("2021-03-20", periods=len(frame), freq="h", tz="Europe/Berlin")
    frame["date"] = [t.isoformat() for t in local]  # +01:00, then +02:00 after the change
    write_series(tmp_path, frame)
    code, result = run_cli([*custom_args(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["input"]["freq"] == "h" and result["data"]["input"]["regular"]

def test_day_first_dates_are_read_day_first(tmp_path):
    frame = synthetic_frame(400, ["a", "OT"], freq="MS")
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y")  # 01/02/1950 is 1 February
    write_series(tmp_path, frame)
    code, result = run_cli([*custom_args(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["input"]["freq"] == "MS" and result["data"]["input"]["season_length"] == 12
