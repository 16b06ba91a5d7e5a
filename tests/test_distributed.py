"""Real DeepSpeed on CPU through its launchers: 2 processes, kill-and-resume, SIGTERM, configuration errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, TINY, run_cli

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def _ett(ett_root) -> list[str]:
    return ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY]


def test_two_process_zero2_matches_one_process_evaluation(ett_root, tmp_path):
    out, ckpt = tmp_path / "results", tmp_path / "checkpoints"
    args = [*_ett(ett_root), "--train_epochs", "1", "--max_train_steps", "6", "--output_dir", str(out),
            "--checkpoints", str(ckpt)]
    proc = subprocess.run([ACCELERATE, "launch", "--use_deepspeed", "--deepspeed_config_file",
                           str(ROOT / "ds_config_zero2.json"), "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--main_process_port", str(29100 + os.getpid() % 500),
                           str(ROOT / "run_main.py"), *args], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test  mse") == 1  # only rank 0 prints
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) == 3 and "result_long_term_forecast.txt" in files  # one table, one results.json, one plot
    assert sum(f.endswith("/forecast.png") for f in files) == 1
    result = json.loads((out / next(f for f in files if f.endswith("/results.json"))).read_text())
    assert result["distributed"]["num_processes"] == 2 and result["distributed"]["deepspeed_stage"] == 2
    assert result["metrics"]["test"]["samples"] == 2880 - 12 + 1
    assert (out / "result_long_term_forecast.txt").read_text().count("mse:") == 1

    # the same checkpoint scored by one plain process
    from accelerate.state import AcceleratorState, PartialState

    import run_main

    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    assert run_main.main([*_ett(ett_root), "--is_training", "0", "--output_dir", str(tmp_path / "one"),
                          "--checkpoints", str(ckpt)]) == 0
    one = json.loads(next((tmp_path / "one").glob("*/test_results.json")).read_text())
    assert one["metrics"]["test"]["samples"] == result["metrics"]["test"]["samples"]
    assert one["metrics"]["test"]["mse"] == pytest.approx(result["metrics"]["test"]["mse"], abs=1e-5)
    assert one["metrics"]["test"]["mae"] == pytest.approx(result["metrics"]["test"]["mae"], abs=1e-5)

    # ... and forecast on one CPU process by forecast.py's API, over the rows of the test split
    from timellm_launcher.engine.forecast.forecaster import Forecaster

    a, b = result["data"]["borders"]["test"]
    rows = pd.read_csv(ett_root / "ETTh1.csv").iloc[a:b]
    run = out / next(f for f in files if f.endswith("/results.json"))
    scored = Forecaster.load(run, device="cpu").predict(rows, rolling=True).attrs["metrics"]
    assert scored["mse"] == pytest.approx(result["metrics"]["test"]["mse"], abs=1e-5)


# ------------------------------------------------------------------ resume
RESUME_ARGS = ["--train_epochs", "3", "--max_train_steps", "15", "--save_every_steps", "4", "--lradj", "type1",
               "--seed", "11", "--patience", "5"]


@pytest.fixture(scope="module")
def uninterrupted(ett_root, tmp_path_factory):
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    code, result = run_cli([*_ett(ett_root), *RESUME_ARGS], tmp_path_factory.mktemp("whole"))
    assert code == 0
    return result


def _start_and_stop(ett_root, tmp_path: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a run in a subprocess, deliver `sig` once its first checkpoint exists."""
    args = [sys.executable, str(ROOT / "run_main.py"), *_ett(ett_root), *RESUME_ARGS,
            "--output_dir", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "checkpoints")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list((tmp_path / "checkpoints").glob("*/last/training_state.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _same_run(resumed: dict, whole: dict) -> None:
    for split in ("val", "test"):
        for key, value in whole["metrics"][split].items():
            if key == "baselines":  # computed from the data alone: equal to the bit
                assert resumed["metrics"][split][key] == value
                continue
            assert resumed["metrics"][split][key] == pytest.approx(value, rel=1e-6, abs=1e-6), (split, key)
    for mine, theirs in zip(resumed["history"], whole["history"], strict=True):
        for key in ("lr", "train_loss", "val_mse", "val_mae", "steps"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-6), key


def test_killed_run_resumes_to_the_same_metrics(ett_root, tmp_path, uninterrupted):
    done = _start_and_stop(ett_root, tmp_path, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    state = json.loads(next((tmp_path / "checkpoints").glob("*/last/training_state.json")).read_text())
    assert not state["progress"]["finished"]
    code, resumed = run_cli([*_ett(ett_root), *RESUME_ARGS, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_run(resumed, uninterrupted)


def test_sigterm_saves_and_exits_cleanly_then_resumes(ett_root, tmp_path, uninterrupted):
    done = _start_and_stop(ett_root, tmp_path, signal.SIGTERM)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "interrupted by SIGTERM" in done.stdout and "--resume auto" in done.stdout
    assert "Traceback" not in done.stderr
    code, resumed = run_cli([*_ett(ett_root), *RESUME_ARGS, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_run(resumed, uninterrupted)


# ------------------------------------------------------------------ errors
def _error(args: list[str], capsys) -> str:
    import run_main

    assert run_main.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_fp16_deepspeed_on_cpu_is_refused(ett_root, capsys):
    err = _error([*_ett(ett_root), "--deepspeed", "--mixed_precision", "fp16"], capsys)
    assert "fp16 is not supported by DeepSpeed on CPU" in err and "bf16" in err


def test_missing_ds_config(ett_root, tmp_path, capsys):
    err = _error([*_ett(ett_root), "--deepspeed", "--ds_config", str(tmp_path / "nope.json")], capsys)
    assert "--ds_config" in err and "not found" in err


def test_malformed_ds_config(ett_root, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 2,}')
    assert "not valid JSON" in _error([*_ett(ett_root), "--deepspeed", "--ds_config", str(bad)], capsys)
    bad.write_text('{"bf16": {"enabled": "auto"}}')
    assert "zero_optimization" in _error([*_ett(ett_root), "--deepspeed", "--ds_config", str(bad)], capsys)


def test_offload_without_deepspeed_is_refused(ett_root, capsys):
    assert "needs DeepSpeed" in _error([*_ett(ett_root), "--offload_optimizer", "cpu"], capsys)


def test_resume_from_a_missing_folder(ett_root, tmp_path, capsys):
    err = _error([*_ett(ett_root), "--resume", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "r"),
                  "--checkpoints", str(tmp_path / "c")], capsys)
    assert "--resume" in err
