"""Real DeepSpeed on CPU through its launchers: 2 processes against one, configuration errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, TINY, reset_accelerate

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
    import run_main

    reset_accelerate()
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

