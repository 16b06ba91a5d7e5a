"""A run never loses or overwrites an earlier run's results: versions, separate files, unwritable outputs
found before training, one file mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conftest import custom_args, output_paths, refused, run_cli, synthetic_frame, write_series

SHORT = ["--train_epochs", "1", "--max_train_steps", "6"]


# ------------------------------------------------------------------ lost or overwritten data
def test_running_twice_keeps_the_first_run_whole(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *SHORT]
    code, first = run_cli(args, tmp_path)
    assert code == 0
    run = tmp_path / "results" / first["setting"]
    ckpt = Path(first["checkpoint_absolute"]).parent
    before = {p: p.read_bytes() for folder in (run, ckpt) for p in folder.rglob("*") if p.is_file()}
    code, second = run_cli(args, tmp_path)
    assert code == 0
    assert second["setting"] == first["setting"] + "_v2"
    assert "this run writes version 2" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before  # every file of the first run, byte for byte
    table = (tmp_path / "results" / "result_long_term_forecast.txt").read_text()
    assert table.count(first["setting"] + "  \n") == 1 and table.count(second["setting"] + "  \n") == 1
    assert Path(second["checkpoint_absolute"]).parent.name == first["setting"] + "_v2"


def test_custom_runs_on_different_files_keep_apart(tmp_path, frame):
    write_series(tmp_path, frame, "one.csv")
    write_series(tmp_path, synthetic_frame(700, ["a", "b", "OT"], seed=5), "two.csv")
    _, one = run_cli([*custom_args(tmp_path, "one.csv"), *SHORT], tmp_path)
    _, two = run_cli([*custom_args(tmp_path, "two.csv"), *SHORT], tmp_path)
    assert "_one_48_12_" in one["setting"] and "_two_48_12_" in two["setting"]
    assert json.loads((tmp_path / "results" / one["setting"] / "results.json").read_text()) == one


def test_a_rerun_killed_early_leaves_the_earlier_best_checkpoint(tmp_path, frame, capsys):
    """A new run claims its own version: whatever happens to it, the earlier run's files stay and still match."""
    write_series(tmp_path, frame)
    _, first = run_cli([*custom_args(tmp_path), *SHORT], tmp_path)
    bad = frame.copy()
    bad.loc[650, "date"] = bad.loc[649, "date"]  # the rerun dies on its data, after the first one finished
    write_series(tmp_path, bad)
    refused([*custom_args(tmp_path), *SHORT, *output_paths(tmp_path)], capsys)
    assert Path(first["checkpoint_absolute"]).is_file()
    assert json.loads((tmp_path / "results" / first["setting"] / "results.json").read_text())[
        "checkpoint_absolute"] == first["checkpoint_absolute"]


def test_unwritable_output_is_found_before_training(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    err = refused([*custom_args(tmp_path), *SHORT, "--output_dir", "/proc/timellm-results",
                   "--checkpoints", str(tmp_path / "checkpoints")], capsys)
    assert "--output_dir" in err
    assert "epoch" not in capsys.readouterr().out


def test_output_dir_naming_a_file(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    (tmp_path / "afile").write_text("x")
    err = refused([*custom_args(tmp_path), *SHORT, "--output_dir", str(tmp_path / "afile")], capsys)
    assert "is a file, not a folder" in err


def test_outputs_share_one_file_mode(tmp_path, frame):
    write_series(tmp_path, frame)
    _, result = run_cli([*custom_args(tmp_path), *SHORT, "--save_every_steps", "3"], tmp_path)
    ckpt = Path(result["checkpoint_absolute"])
    files = [ckpt, ckpt.parent / "last" / "model.safetensors", ckpt.parent / "last" / "optimizer.safetensors",
             tmp_path / "results" / result["setting"] / "results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o666 & ~umask}
