"""The flag reference is --help; the README is the newcomer's manual, short enough to read, with working links."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from timellm_launcher.engine.config import IGNORED_FLAGS, Config, build_parser

README_LIMIT = 25_000  # bytes


def test_every_flag_has_help_in_its_group():
    for f in dataclasses.fields(Config):
        meta = f.metadata
        assert len(meta["help"]) >= 10, f"--{f.name}: help text missing or too short"
        assert meta["group"], f"--{f.name}: no --help group"
        if meta["choices"]:
            assert f.default in meta["choices"], f"--{f.name}: default {f.default!r} not among its choices"


@pytest.mark.parametrize("script", ["run_main.py", "estimate_training_time.py", "forecast.py"])
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
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
