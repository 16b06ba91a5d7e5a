"""Peak memory of `forecast.py --rolling` as the file grows: a streamed backtest holds one batch of windows, so its
peak should stay flat while the file grows 10x (only the file itself grows in memory).

    python -m benchmarks.backtest_memory [--rows 20000] [--json FILE]

Trains a tiny run (random GPT-2-shaped backbone, 3 variables, 48 -> 24) on a generated hourly file, then backtests
files of `rows` and 10 x `rows` rows, each in a fresh process, and prints each process's own peak resident set
(VmHWM, read at exit) beside the number of windows forecast.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from timellm_launcher.data_provider.synthetic import synthetic_frame
from timellm_launcher.engine.recipes import TINY_MODEL
from timellm_launcher.engine.runtime import device_name

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = [*TINY_MODEL, "--seq_len", "48", "--pred_len", "24", "--patch_len", "8", "--stride", "8",
            "--batch_size", "16", "--eval_batch_size", "256", "--mixed_precision", "no", "--train_epochs", "1",
            "--max_train_steps", "10", "--plot_windows", "0"]
COLUMNS = ["a", "b", "OT"]

# Runs forecast.py in this process and prints its own peak resident set at exit (a parent's wait4 would report the
# launching process's peak when that is larger: Linux carries ru_maxrss over exec).
_MEASURED = ("import atexit, runpy, sys\n"
             "def peak():\n"
             "    for line in open('/proc/self/status'):\n"
             "        if line.startswith('VmHWM:'):\n"
             "            print('PEAK_KB', line.split()[1], file=sys.stderr)\n"
             "atexit.register(peak)\n"
             "sys.argv = ['forecast.py', *sys.argv[1:]]\n"
             "runpy.run_path('forecast.py', run_name='__main__')\n")


def train_run(folder: Path) -> Path:
    """A tiny trained run on a generated file; returns its results folder."""
    synthetic_frame(3000, COLUMNS).to_csv(folder / "train.csv", index=False)
    done = subprocess.run([sys.executable, "run_main.py", "--data", "custom", "--root_path", str(folder),
                           "--data_path", "train.csv", "--features", "M", *TINY_RUN, "--output_dir",
                           str(folder / "results"), "--checkpoints", str(folder / "checkpoints")],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return next((folder / "results").glob("*/results.json")).parent


def backtest_peak_mb(run: Path, data: Path, output: Path, *extra: str) -> tuple[float, str]:
    """(peak resident set in MB, stdout) of `forecast.py --rolling` on `data`, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _MEASURED, "--run", str(run), "--data_path", str(data),
                           "--rolling", "--output", str(output), *extra], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    kb = next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("PEAK_KB"))
    return int(kb) / 1024, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows of the smaller file (the larger has 10x)")
    parser.add_argument("--json", default="")
    opts = parser.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="backtest-memory-") as tmp:
        folder = Path(tmp)
        run = train_run(folder)
        rows = []
        for size in (opts.rows, 10 * opts.rows):
            data = folder / f"rows{size}.csv"
            synthetic_frame(size, COLUMNS, seed=1).to_csv(data, index=False)
            peak, out = backtest_peak_mb(run, data, folder / f"rolling{size}.csv")
            windows = size - 48 - 24 + 1
            rows.append({"rows": size, "windows": windows, "values_written": windows * 24 * len(COLUMNS),
                         "peak_rss_mb": peak})
            print(f"{size:>9,} rows, {windows:>9,} windows x 24 steps x 3 variables: peak RSS {peak:,.0f} MB",
                  flush=True)
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"10x the file: peak RSS x{growth:.2f} ({device_name(torch.device('cpu'))}, "
          f"{torch.get_num_threads()} threads)")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rows": rows, "growth": growth}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
