"""What a run reads from files others may have written (run folders, resumable states, M4 arrays, data files): none
can run code, a run's weights are always its own, and every failure is one line with exit code 2."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY, custom_args, main_code, run_cli, synthetic_frame

SHORT = ["--train_epochs", "1", "--max_train_steps", "6"]
RESUMABLE = ["--train_epochs", "2", "--max_train_steps", "6", "--save_every_steps", "3", "--seed", "3"]


class Payload:
    """Unpickling this creates `marker`: the proof that loading a file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _forecast(argv: list[str]) -> int:
    import forecast

    return forecast.main(argv)


@pytest.fixture
def series(tmp_path) -> Path:
    synthetic_frame(700, ["a", "b", "OT"]).to_csv(tmp_path / "series.csv", index=False)
    return tmp_path


def _state_folder(folder: Path) -> Path:
    code, _ = run_cli([*custom_args(folder), *RESUMABLE], folder)
    assert code == 0
    return next((folder / "checkpoints").glob("*/last"))


# ------------------------------------------------------------------------------------------ no file runs code
@pytest.mark.parametrize("planted", ["training_state.json", "rng_rank0.json", "optimizer.safetensors"])
def test_a_pickle_planted_in_a_resumable_state_never_runs(series, capsys, planted):
    last = _state_folder(series)
    shutil.rmtree(last.parent / "previous", ignore_errors=True)
    marker = series / "ran"
    target = last / planted
    if planted == "optimizer.safetensors":
        torch.save({"state": Payload(marker)}, target)  # torch's own zip format, with the payload inside
    else:
        target.write_bytes(pickle.dumps(Payload(marker)))
    capsys.readouterr()
    assert main_code([*custom_args(series), *RESUMABLE, "--resume", "auto", "--output_dir", str(series / "results"),
                      "--checkpoints", str(series / "checkpoints")]) == 2
    err = _one_line(capsys)
    assert str(target) in err and not marker.exists()


def test_old_pickle_files_beside_a_state_are_never_read(series, capsys):
    """Files of the pickle era (training_state.pt, rng_rank0.pt, optimizer.pt) planted with payloads next to an
    intact state: the resume finishes and nothing ran."""
    last = _state_folder(series)
    marker = series / "ran"
    for name in ("training_state.pt", "rng_rank0.pt", "optimizer.pt"):
        torch.save({"payload": Payload(marker)}, last / name)
    code, result = run_cli([*custom_args(series), *RESUMABLE, "--resume", "auto"], series)
    assert code == 0 and result is not None and not marker.exists()


def test_an_m4_array_file_with_a_payload_is_refused_in_one_line(tmp_path, capsys):
    from timellm_launcher.data_provider.synthetic import write_m4

    folder = write_m4(tmp_path, per_pattern=8)
    marker = tmp_path / "ran"
    series = np.empty(len(pd.read_csv(folder / "M4-info.csv")), dtype=object)
    series[:] = [np.arange(30.0) for _ in range(len(series))]
    series[0] = Payload(marker)
    with open(folder / "training.npz", "wb") as handle:
        pickle.dump(series, handle, protocol=2)
    assert main_code(["--task_name", "short_term_forecast", "--data", "m4", "--root_path", str(tmp_path),
                      "--seasonal_patterns", "Yearly", *TINY,
                      "--output_dir", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ck")]) == 2
    err = _one_line(capsys)
    assert "training.npz" in err and "refers to" in err and not marker.exists()


def test_no_unsafe_loader_remains_in_the_code():
    """No torch.load without weights_only=True and no allow_pickle=True anywhere the project reads files."""
    sources = list((ROOT / "timellm_launcher").rglob("*.py"))
    sources += list(ROOT.glob("*.py"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "allow_pickle=True" not in text and "weights_only=False" not in text, path
        assert "torch.load(" not in text and "pickle.load(" not in text, path


# ------------------------------------------------------------------------------------------ a run's own weights
@pytest.fixture
def moved_run(series) -> dict:
    """A run trained under a/, its forecast, then both folders moved to b/ and a new run of the same flags
    trained under a/ (the moved run's recorded absolute path now holds the new run's weights)."""
    first = series / "a"
    first.mkdir()
    code, result = run_cli([*custom_args(series), *SHORT, "--seed", "1"], first)
    assert code == 0
    run = first / "results" / result["setting"]
    assert _forecast(["--run", str(run), "--output", str(series / "before.csv")]) == 0
    moved = series / "b"
    shutil.move(first, moved)
    first.mkdir()
    code, again = run_cli([*custom_args(series), *SHORT, "--seed", "2"], first)
    assert code == 0 and again["run_id"] != result["run_id"]
    assert Path(result["checkpoint_absolute"]).is_file()  # the old absolute path exists again, with other weights
    return {"run": moved / "results" / result["setting"], "result": result, "again": again, "folder": series,
            "before": pd.read_csv(series / "before.csv")}


def test_a_moved_run_forecasts_with_its_own_weights(moved_run):
    out = moved_run["folder"] / "after.csv"
    assert _forecast(["--run", str(moved_run["run"]), "--output", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), moved_run["before"])


def test_a_results_folder_moved_alone_needs_and_takes_checkpoint(moved_run, capsys):
    run, folder = moved_run["run"], moved_run["folder"]
    alone = folder / "alone"
    shutil.copytree(run, alone)
    assert _forecast(["--run", str(alone), "--output", str(folder / "x.csv")]) == 2
    err = _one_line(capsys)
    assert "belongs to another run" in err and moved_run["result"]["run_id"] in err
    best = folder / "b" / "checkpoints" / moved_run["result"]["setting"] / "best.safetensors"
    out = folder / "alone.csv"
    assert _forecast(["--run", str(alone), "--checkpoint", str(best), "--output", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), moved_run["before"])


def test_results_pointing_at_another_runs_weights_are_refused(moved_run, capsys):
    run, again = moved_run["run"], moved_run["again"]
    record = json.loads((run / "results.json").read_text())
    record["checkpoint"] = record["checkpoint_absolute"] = again["checkpoint_absolute"]
    (run / "results.json").write_text(json.dumps(record))
    assert _forecast(["--run", str(run), "--output", str(moved_run["folder"] / "x.csv")]) == 2
    err = _one_line(capsys)
    assert again["run_id"] in err and record["run_id"] in err


def test_scoring_a_swapped_checkpoint_is_refused(series, capsys):
    code, first = run_cli([*custom_args(series), *SHORT, "--seed", "1"], series)
    assert code == 0
    other = series / "other"
    other.mkdir()
    code, second = run_cli([*custom_args(series), *SHORT, "--seed", "2"], other)
    assert code == 0
    shutil.copy(second["checkpoint_absolute"], first["checkpoint_absolute"])
    capsys.readouterr()
    assert main_code([*custom_args(series), *SHORT, "--seed", "1", "--is_training", "0", "--output_dir",
                      str(series / "results"), "--checkpoints", str(series / "checkpoints")]) == 2
    err = _one_line(capsys)
    assert second["run_id"] in err and first["run_id"] in err


# ------------------------------------------------------------------------------------------ results.json fields
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    synthetic_frame(700, ["a", "b", "OT"]).to_csv(folder / "series.csv", index=False)
    code, result = run_cli([*custom_args(folder), *SHORT], folder)
    assert code == 0
    return folder / "results" / result["setting"]


def _edited(run: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "results.json").read_text())
    record["checkpoint"] = record["checkpoint_absolute"]
    edit(record)
    (copy / "results.json").write_text(json.dumps(record))
    return copy


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r["data"]["input"].update(std="abc"), "data.input.std"),
    (lambda r: r["data"]["input"].update(std=[0.0, 1.0, 1.0]), "data.input.std"),
    (lambda r: r["data"]["input"].update(mean=[1.0]), "data.input.mean"),
    (lambda r: r.update(config=[1, 2]), "config"),
    (lambda r: r["config"].update(seq_len="96"), "config.seq_len"),
    (lambda r: r["data"]["input"].update(columns="OT"), "data.input.columns"),
    (lambda r: r["data"]["input"].update(features="X"), "data.input.features"),
    (lambda r: r.update(seed=None), "seed"),
])
def test_a_bad_field_of_results_json_is_named(trained_run, tmp_path, capsys, edit, field):
    copy = _edited(trained_run, tmp_path, edit)
    assert _forecast(["--run", str(copy), "--output", str(tmp_path / "f.csv")]) == 2
    assert f"field {field} " in _one_line(capsys)


def test_hostile_results_json_fields_give_one_line_or_a_forecast(trained_run, tmp_path_factory, capsys):
    """Any JSON value in any field forecast.py reads: exit 0, or exit 2 with one line; never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    paths = [("config", "seq_len"), ("config", "pred_len"), ("config", "llm_model"), ("config", "features"),
             ("data", "input", "mean"), ("data", "input", "std"), ("data", "input", "columns"),
             ("data", "input", "file_columns"), ("data", "input", "target"), ("data", "input", "freq"),
             ("data", "input", "date_column"), ("data", "input", "season_length"), ("data", "input", "regular"),
             ("model", "description"), ("distributed", "mixed_precision"), ("run_id",), ("checkpoint",), ("seed",),
             ("data", "path")]
    values = st.recursive(st.none() | st.booleans() | st.integers(-1000, 10**4) |
                          st.floats(allow_nan=False, allow_subnormal=False) |
                          st.text(max_size=8), lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(paths), values)
    def probe(path, value):
        copy = tmp_path_factory.mktemp("hostile")
        shutil.copytree(trained_run, copy / "run")
        file = copy / "run" / "results.json"
        record = json.loads(file.read_text())
        record["checkpoint"] = record["checkpoint_absolute"]
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        file.write_text(json.dumps(record))
        code = _forecast(["--run", str(copy / "run"), "--output", str(copy / "f.csv")])
        captured = capsys.readouterr()
        assert code in (0, 2), captured.err
        if code == 2:
            err = captured.err.strip()
            assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err

    probe()


# ------------------------------------------------------------------------------------------ one line, or a note
def test_a_failed_write_is_one_line_and_leaves_no_empty_folders(series):
    """A file size limit (as a full disk or a quota would) hit while writing the checkpoint: exit 2, one line naming
    the file and the cause, the earlier run intact, no empty run folder left."""
    code, earlier = run_cli([*custom_args(series), *SHORT], series)
    assert code == 0
    before = {p: p.stat().st_size for p in series.rglob("*") if p.is_file()}
    limit = 64 * 1024  # the tiny model's weights are larger

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "run_main.py", *custom_args(series), *SHORT, "--output_dir",
                           str(series / "results"), "--checkpoints", str(series / "checkpoints")],
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=small_files, timeout=600)
    err = done.stderr.strip()
    assert done.returncode == 2, err[-2000:]
    assert err.startswith("error: cannot write ") and "File too large" in err and "\n" not in err, err
    assert {p: p.stat().st_size for p in series.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (series / "results").iterdir() if p.is_dir()) == [earlier["setting"]]
    assert sorted(p.name for p in (series / "checkpoints").iterdir()) == [earlier["setting"]]


def test_mixed_date_formats_are_named_with_two_lines(tmp_path, capsys):
    dates = [f"1990-01-{d:02d}" for d in range(1, 4)] + [f"{d:02d}/01/1990" for d in range(4, 31)]
    frame = pd.DataFrame({"date": dates, "OT": np.arange(len(dates), dtype=float)})
    frame.to_csv(tmp_path / "series.csv", index=False)
    assert main_code(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv", *TINY,
                      "--output_dir", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c")]) == 2
    err = _one_line(capsys)
    assert "more than one format" in err and "line 2 '1990-01-01'" in err and "line 5 '04/01/1990'" in err


def test_a_trailing_separator_column_is_dropped_with_a_note(tmp_path, capsys):
    frame = synthetic_frame(700, ["a", "OT"])
    lines = [",".join(frame.columns) + ","] + [",".join(map(str, row)) + "," for row in frame.itertuples(False)]
    (tmp_path / "series.csv").write_text("\n".join(lines) + "\n")
    code, result = run_cli(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv",
                            "--features", "M", *TINY, *SHORT], tmp_path)
    assert code == 0 and result["data"]["columns"] == ["a", "OT"]
    assert "dropped 1 empty column(s) without a name" in capsys.readouterr().out


def test_irregular_dates_are_warned_once_with_the_first_gap(tmp_path, capsys):
    frame = synthetic_frame(707, ["a", "OT"], freq="D")
    frame = frame.drop(index=range(300, 307)).reset_index(drop=True)
    frame.to_csv(tmp_path / "series.csv", index=False)
    code, result = run_cli(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv",
                            "--features", "M", *TINY, *SHORT], tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and out.count("is not evenly spaced") == 1
    gap = pd.to_datetime(frame["date"])
    assert f"line 301 ({gap[299]})" in out and f"line 302 ({gap[300]})" in out


def test_a_constant_target_prints_no_nan_skill(tmp_path, capsys):
    frame = synthetic_frame(700, ["a", "OT"])
    frame["OT"] = 5.0
    frame.to_csv(tmp_path / "series.csv", index=False)
    code, _ = run_cli(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv", "--features",
                       "S", *TINY, *SHORT], tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and "nan" not in out.lower() and "none to compute" in out


def test_a_second_forecast_never_replaces_the_first(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert _forecast(["--run", str(run)]) == 0
    assert _forecast(["--run", str(run)]) == 0
    made = sorted(p.name for p in run.glob("forecast_*.csv"))
    assert made == ["forecast_series.csv", "forecast_series_v2.csv"]
    named = tmp_path / "mine.csv"
    named.write_text("keep me")
    capsys.readouterr()
    assert _forecast(["--run", str(run), "--output", str(named)]) == 2
    assert "--overwrite" in _one_line(capsys) and named.read_text() == "keep me"
    assert _forecast(["--run", str(run), "--output", str(named), "--overwrite"]) == 0
    assert named.read_text() != "keep me"
    assert os.path.getsize(named) > 0
