"""Shared fixtures: real benchmark CSVs from ../shared/data when present, generated ones otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import configs
from timellm_launcher.data_provider.synthetic import LAYOUTS, synthetic_frame
from timellm_launcher.engine.recipes import TINY_FLAGS

__all__ = ["synthetic_frame"]  # the tests' data, re-exported for them

ROOT = Path(__file__).resolve().parents[1]
ETT_COLUMNS = LAYOUTS["ETTh1"][1]  # ETTh1's columns besides the date
TINY = [*TINY_FLAGS, "--batch_size", "16", "--eval_batch_size", "256"]  # the tiny model at the tests' batch sizes


def reset_accelerate() -> None:
    """Forget the Accelerator of a previous in-process run, so the next one builds its own (torch's process group,
    if any, stays)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def ett_root(tmp_path_factory) -> Path:
    """A folder holding ETTh1.csv: the real one when ../shared/data has it."""
    return configs.ett_root(tmp_path_factory.mktemp("ett"))


@pytest.fixture(scope="session")
def ett_run(ett_root, tmp_path_factory):
    """One tiny training run shared by test_train's assertions and test_checkpoints' resume refusal (3 epochs x 40
    steps, features S)."""
    reset_accelerate()
    tmp = tmp_path_factory.mktemp("ett_run")
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY,
            "--train_epochs", "3", "--max_train_steps", "40", "--lradj", "constant", "--seed", "7"]
    code, result = run_cli(args, tmp)
    return {"code": code, "result": result, "tmp": tmp, "args": args}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> list[str]:
    """A 1,200-row hourly CSV (test split of ~230 windows) so the end-to-end runs here stay quick."""
    folder = tmp_path_factory.mktemp("small_csv")
    synthetic_frame(1200, ["load", "OT"]).to_csv(folder / "small.csv", index=False)
    return ["--data", "custom", "--root_path", str(folder), "--data_path", "small.csv", "--features", "S"]


@pytest.fixture
def csv_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Each in-process run builds its own Accelerator; what a run exports to os.environ is undone after it."""
    import os

    saved = dict(os.environ)
    reset_accelerate()
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_cli(args: list[str], tmp_path: Path) -> tuple[int, dict | None]:
    """Run run_main in-process with outputs under tmp_path; returns (exit code, results.json or None)."""
    import run_main

    out, ckpt = tmp_path / "results", tmp_path / "checkpoints"
    code = run_main.main([*args, "--output_dir", str(out), "--checkpoints", str(ckpt)])
    found = sorted(out.glob("*/results.json"))
    return code, json.loads(found[-1].read_text()) if found else None


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of every TensorBoard event file under folder (TFRecord framing, Event protos)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def custom_args(folder: Path, name: str = "series.csv") -> list[str]:
    """run_main flags of a tiny --data custom run on folder/name (all variables)."""
    return ["--data", "custom", "--root_path", str(folder), "--data_path", name, "--features", "M", *TINY]


def write_series(folder: Path, frame: pd.DataFrame, name: str = "series.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def main_code(argv: list[str]) -> int:
    """run_main's exit code, in this process."""
    import run_main

    return run_main.main(argv)


def refused(argv: list[str], capsys, *, written: Path | None = None) -> str:
    """Exit 2 with one error line on stderr, and nothing under `written`."""
    assert main_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    if written is not None:
        assert not written.exists() or not any(written.rglob("*.json")), list(written.rglob("*"))
    return err


def output_paths(tmp_path: Path) -> list[str]:
    return ["--output_dir", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "checkpoints")]


@pytest.fixture
def frame() -> pd.DataFrame:
    """A small 3-variable hourly series (700 rows)."""
    return synthetic_frame(700, ["a", "b", "OT"])
