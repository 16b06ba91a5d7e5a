"""The flag reference is --help; the README is the newcomer's manual, short enough to read, with working links."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from timellm_launcher.engine.config import IGNORED_FLAGS, Config, build_parser

README_LIMIT = 25_000  # bytes
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
ENTRY_POINTS = ["run_main.py", "estimate_training_time.py", "forecast.py"]
RUNNABLE = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if "__main__" in p.read_text(encoding="utf-8"))


def test_every_flag_has_help_in_its_group():
    for f in dataclasses.fields(Config):
        meta = f.metadata
        assert len(meta["help"]) >= 10, f"--{f.name}: help text missing or too short"
        assert meta["group"], f"--{f.name}: no --help group"
        if meta["choices"]:
            assert f.default in meta["choices"], f"--{f.name}: default {f.default!r} not among its choices"


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_lists_every_flag(script):
    text = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout
    flags = {a.option_strings[0] for a in build_parser("t")._actions if a.option_strings} - {"-h"}
    if script == "forecast.py":
        from timellm_launcher.commands import forecast_parser

        flags = {a.option_strings[0] for a in forecast_parser()._actions if a.option_strings} - {"-h"}
    missing = [flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", text)]
    assert not missing, f"{script} --help lacks {missing}"


def test_ignored_flags_are_explained_once_and_not_configuration():
    names = {f.name for f in dataclasses.fields(Config)}
    assert not names & set(IGNORED_FLAGS)
    text = subprocess.run([sys.executable, str(ROOT / "run_main.py"), "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout
    assert " ".join(text.split()).count("Time-Series-Library scripts run unchanged") == 1


def test_readme_first_lines_are_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/setup.sh && .venv/bin/python run_main.py")
    assert block[1].startswith("bash scripts/setup.sh && .venv/bin/python -m pytest -q tests")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/setup.sh" in ci and ".venv/bin/python -m pytest -q tests" in ci


def test_readme_is_short_and_points_to_help():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= README_LIMIT, f"README.md is {len(readme)} bytes; move detail to docs/"
    assert b"--help" in readme


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


# ------------------------------------------------------------------ the commands the pages show
def _shown(pattern: str) -> set[str]:
    """Every match of `pattern` (its group) in README.md, docs/ and benchmarks/README.md."""
    return {match for page in PAGES for match in re.findall(pattern, page.read_text(encoding="utf-8"))}


def test_shown_commands_exist():
    """Benchmarks are shown as `python -m benchmarks.X` (as a file, python could not import the package), and
    every benchmark, entry point and script a page shows is there to run."""
    assert not _shown(r"python3? (benchmarks/\w+\.py)")
    assert _shown(r"-m benchmarks\.([a-z_0-9]+)") <= set(RUNNABLE)
    assert set(ENTRY_POINTS) <= _shown(r"python3? (\w+\.py)")
    scripts = _shown(r"bash (scripts/\w+\.sh)") | _shown(r"`(scripts/\w+\.sh)`")
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts  # test_scripts.py checks each one


HELP_ALL = """
import contextlib, io, json, runpy, sys
names, shown = sys.argv[1:], {}
for name in names:
    sys.argv, text = [name, "--help"], io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            runpy.run_module("benchmarks." + name, run_name="__main__")
        code = "returned without exiting"
    except SystemExit as stop:
        code = stop.code or 0
    shown[name] = [code, text.getvalue()]
print(json.dumps(shown))
"""


@pytest.fixture(scope="module")
def benchmark_help() -> dict[str, list]:
    """`python -m benchmarks.X --help` of every runnable benchmark, as (exit code, stdout); one interpreter runs them
    all (each is a fresh run of the module's code; torch is imported once)."""
    done = subprocess.run([sys.executable, "-c", HELP_ALL, *RUNNABLE], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", RUNNABLE)
def test_every_benchmark_answers_help_without_running(benchmark_help, name):
    code, text = benchmark_help[name]
    assert code == 0 and text.startswith("usage: "), (code, text[-2000:])
