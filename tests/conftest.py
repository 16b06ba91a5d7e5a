"""Shared fixtures: real benchmark CSVs from ../shared/data when present, generated ones otherwise."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from timellm_launcher.data_provider.synthetic import synthetic_frame  # noqa: E402  (the tests' data; re-exported for the tests)

__all__ = ["synthetic_frame"]

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]

# A tiny Time-LLM: 1-layer, 64-wide random GPT-2, 100 prototypes, short windows, fp32 on every CPU.
TINY = ["--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "1", "--llm_dim", "64",
        "--num_tokens", "100", "--d_model", "8", "--d_ff", "16", "--n_heads", "2",
        "--seq_len", "48", "--pred_len", "12", "--patch_len", "8", "--stride", "8",
        "--batch_size", "16", "--eval_batch_size", "256", "--learning_rate", "0.005", "--mixed_precision", "no"]


@pytest.fixture(scope="session")
def ett_root(tmp_path_factory) -> Path:
    """A folder holding ETTh1.csv: the real one when ../shared/data has it."""
    real = SHARED_DATA / "ETTh1.csv"
    if real.is_file():
        return SHARED_DATA
    folder = tmp_path_factory.mktemp("ett")
    synthetic_frame(17420, ETT_COLUMNS).to_csv(folder / "ETTh1.csv", index=False)
    return folder


@pytest.fixture
def csv_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Each in-process run builds its own Accelerator; what a run exports to os.environ is undone after it."""
    import os

    from accelerate.state import AcceleratorState, PartialState

    saved = dict(os.environ)
    AcceleratorState._reset_state(True)
    PartialState._reset_state()
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
