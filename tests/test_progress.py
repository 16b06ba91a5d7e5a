"""Where output is not a terminal, long loops print plain progress lines at a steady cadence."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, TINY
from timellm_launcher.engine import progress as progress_module
from timellm_launcher.engine.progress import LogProgress, progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_each_tenth_and_every_half_minute(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    bar = LogProgress(total=100, desc="epoch 1/3")
    for step in range(100):  # 1 s a step: a tenth every 10 s
        clock.now += 1.0
        bar.update()
        if step == 24:
            bar.set_postfix(loss="0.4321")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert lines[0] == "epoch 1/3: step 10/100 (10%) | 10.0 s elapsed, about 1 min 30 s left"
    assert lines[2].startswith("epoch 1/3: step 30/100 (30%) | loss 0.4321 |")
    assert lines[-1].endswith("(100%) | loss 0.4321 | 1 min 40 s elapsed, about 0.0 s left")

    slow = LogProgress(total=1000, desc="test", unit="batch")  # a tenth takes 2 min: a line every 30 s
    for _ in range(80):
        clock.now += 1.25
        slow.update()
    assert [int(re.search(r"batch (\d+)/", line).group(1)) for line in capsys.readouterr().out.splitlines()] == \
        [24, 48, 72]


def test_short_loops_stay_silent(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    bar = LogProgress(total=50, desc="validate", unit="batch")
    for _ in range(50):
        clock.now += 0.05  # 2.5 s in all
        bar.update()
    assert capsys.readouterr().out == ""


def test_a_terminal_gets_the_bar_a_file_gets_lines(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(progress(range(5), desc="x", show=True), LogProgress)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not isinstance(progress(range(5), desc="x", show=True), LogProgress)
    assert not isinstance(progress(range(5), desc="x", show=False), LogProgress)


def test_progress_lines_reach_a_log_file(tmp_path, ett_root):
    """A run whose output goes to a file prints its epoch's progress there (steps, loss, time left)."""
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "run_main.py", *TINY, "--data", "ETTh1", "--root_path", str(ett_root),
                               "--features", "S", "--llm_layers", "2", "--train_epochs", "1", "--plot_windows", "0",
                               "--output_dir", str(tmp_path / "out"), "--checkpoints", str(tmp_path / "ck")],
                              stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, timeout=900)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    lines = re.findall(r"^epoch 1/1: step ([\d,]+)/([\d,]+) \(\d+%\) \| loss [\d.]+ \| .* elapsed, about .* left$",
                       text, flags=re.MULTILINE)
    assert lines, text[-2000:]
    assert "\r" not in text  # no bar redrawn into the file
