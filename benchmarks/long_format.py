"""Many series in long format against one wide table of the same number of points: the data build, the training
loader's windows/s, and the training step's windows/s, side by side on this machine.

    python -m benchmarks.long_format [--series 10000] [--rounds 3] [--json FILE]

The long file holds `--series` series of 200-400 hourly points (data_provider/synthetic.py long_panel, parquet); the
wide file holds the same points as 10 columns of equal length (CSV, --data custom --features M: each column its own
sample, as long format's series are). Each round measures both formats, alternating which goes first, so the
machine's slow and fast spells fall on both alike. The training step is the estimator's (estimate_training_time.py,
a fresh process per measurement) with the tiny model of benchmarks/configs.py, small enough that the data path
shows in the step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.configs import CONFIGS
from timellm_launcher.data_provider.data_factory import DataOptions, build_data, build_loaders
from timellm_launcher.data_provider.synthetic import long_panel
from timellm_launcher.engine.runtime import device_name

ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN, PRED_LEN, BATCH = 48, 12, 256
WIDE_COLUMNS = 10


def write_files(folder: Path, series: int) -> dict[str, list[str]]:
    """The two files, and the data flags that read each."""
    long = long_panel(series, 200, 400, seed=0)
    long.to_parquet(folder / "long.parquet", index=False)
    rows = len(long) // WIDE_COLUMNS
    values = long["y"].to_numpy()[:rows * WIDE_COLUMNS].reshape(WIDE_COLUMNS, rows).T
    wide = pd.DataFrame(values, columns=[f"v{i}" for i in range(WIDE_COLUMNS - 1)] + ["OT"])
    wide.insert(0, "date", pd.date_range("2000-01-01", periods=rows, freq="h"))
    wide.to_csv(folder / "wide.csv", index=False)
    return {"long": ["--data", "long", "--root_path", str(folder), "--data_path", "long.parquet"],
            "wide": ["--data", "custom", "--root_path", str(folder), "--data_path", "wide.csv", "--features", "M"]}


def options(flags: list[str]) -> DataOptions:
    pairs = dict(zip(flags[::2], flags[1::2], strict=True))
    return DataOptions(data=pairs["--data"], root_path=pairs["--root_path"], data_path=pairs["--data_path"],
                       features=pairs.get("--features", "S"), seq_len=SEQ_LEN, pred_len=PRED_LEN)


def loader_rate(flags: list[str], batches: int) -> dict[str, float]:
    """Seconds to build the data, and training windows per second through the shuffled training DataLoader."""
    start = time.perf_counter()
    data = build_data(options(flags))
    built = time.perf_counter() - start
    loader = build_loaders(data, batch_size=BATCH, eval_batch_size=BATCH)["train"]
    start, seen = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        seen += len(batch["x"])
        if i + 1 == batches:
            break
    return {"build_s": built, "loader_windows_per_s": seen / (time.perf_counter() - start),
            "train_windows": len(data.datasets["train"])}


def step_rate(flags: list[str], measure_seconds: float) -> float:
    """Training windows per second of the estimator's optimizer steps (tiny model, fresh process)."""
    tiny = CONFIGS["tiny"]
    model = [x for k, v in zip(tiny[::2], tiny[1::2], strict=True) if k not in ("--data", "--features") for x in (k, v)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "estimate.json"
        done = subprocess.run([sys.executable, "estimate_training_time.py", *model, *flags, "--seq_len", str(SEQ_LEN),
                               "--pred_len", str(PRED_LEN), "--batch_size", "64", "--measure_seconds",
                               str(measure_seconds), "--output", str(out)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"estimate_training_time.py failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())["measured"]["samples_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loader_batches", type=int, default=300)
    parser.add_argument("--measure_seconds", type=float, default=10.0)
    parser.add_argument("--json", default="")
    opts = parser.parse_args(argv)
    cpu = device_name(torch.device("cpu"))
    print(f"{cpu}, {torch.get_num_threads()} threads; {opts.series:,} series of 200-400 points vs "
          f"{WIDE_COLUMNS} wide columns of the same points; seq_len {SEQ_LEN}, pred_len {PRED_LEN}", flush=True)
    rounds: dict[str, list[dict]] = {"long": [], "wide": []}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), opts.series)
        for r in range(opts.rounds):
            order = ("long", "wide") if r % 2 == 0 else ("wide", "long")
            for kind in order:
                got = loader_rate(files[kind], opts.loader_batches)
                got["step_windows_per_s"] = step_rate(files[kind], opts.measure_seconds)
                rounds[kind].append(got)
                print(f"round {r + 1} {kind}: build {got['build_s']:.2f} s | loader {got['loader_windows_per_s']:,.0f} "
                      f"windows/s | training step {got['step_windows_per_s']:,.0f} windows/s "
                      f"({got['train_windows']:,} training windows)", flush=True)
    summary = {kind: {key: statistics.median(g[key] for g in runs) for key in runs[0]} for kind, runs in rounds.items()}
    for key, label in (("build_s", "data build (s)"), ("loader_windows_per_s", "loader windows/s"),
                       ("step_windows_per_s", "training step windows/s")):
        long, wide = summary["long"][key], summary["wide"][key]
        print(f"median {label}: long {long:,.2f} | wide {wide:,.2f} | long/wide {long / wide:.2f}x")
    if opts.json:
        Path(opts.json).write_text(json.dumps({
            "command": "python -m benchmarks.long_format " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": cpu, "threads": torch.get_num_threads(), "series": opts.series, "rounds": rounds,
            "median": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
