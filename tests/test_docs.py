"""The README is the users' manual: every flag both CLIs take must be documented there."""

from __future__ import annotations

import dataclasses
import re

from conftest import ROOT
from engine.config import Config


def test_readme_documents_every_flag():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(Config) if not re.search(rf"--{f.name}\b", readme)]
    assert not missing, f"flags missing from README.md: {missing} (regenerate its 'Every flag' block)"


def test_readme_first_lines_are_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/setup.sh && .venv/bin/python run_main.py")
    assert block[1].startswith("bash scripts/setup.sh && .venv/bin/python -m pytest -q tests")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/setup.sh" in ci and ".venv/bin/python -m pytest -q tests" in ci
