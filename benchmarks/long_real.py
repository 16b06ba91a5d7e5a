"""Real data in long format: the variables of ETTh1 or exchange_rate (../shared/data) as separate series of unequal
lengths, trained with --data long and scored beside the baselines, with interval coverage.

    python -m benchmarks.long_real [--dataset ETTh1|exchange_rate] [--json FILE] [-- extra run_main flags]

Series i starts `i * stagger` rows into the file, so no two series have the same length or start. Each series holds
out its last --test_size points for test and the --val_size before them for validation (per series, as
neuralforecast's cross_validation does); the flags below are the embedded default's model (pretrained MiniLM,
2 layers, bf16 where the CPU has it) on 96 -> 24 windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from benchmarks.configs import SHARED_DATA
from timellm_launcher.engine.runtime import device_name

# (file, stagger in rows, validation and test points per series)
DATASETS = {"ETTh1": ("ETTh1.csv", 500, 1440, 1440), "exchange_rate": ("exchange_rate.csv", 250, 750, 750)}
FLAGS = ["--seq_len", "96", "--pred_len", "24", "--train_epochs", "1", "--max_train_steps", "600",
         "--levels", "80", "95", "--plot_windows", "4"]


def write_long(dataset: str, folder: Path) -> tuple[Path, int, int]:
    """The dataset's variables as series of unequal lengths, in long format."""
    file, stagger, val, test = DATASETS[dataset]
    wide = pd.read_csv(SHARED_DATA / file)
    date = wide.columns[0]
    parts = [pd.DataFrame({"unique_id": column, "ds": pd.to_datetime(wide[date].iloc[i * stagger:]),
                           "y": wide[column].iloc[i * stagger:]}) for i, column in enumerate(wide.columns[1:])]
    path = folder / f"{dataset}_long.parquet"
    pd.concat(parts, ignore_index=True).to_parquet(path, index=False)
    return path, val, test


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="ETTh1")
    parser.add_argument("--json", default="")
    opts = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if not (SHARED_DATA / DATASETS[opts.dataset][0]).is_file():
        raise SystemExit(f"{SHARED_DATA / DATASETS[opts.dataset][0]} is missing: this benchmark needs the real file")
    import run_main

    with tempfile.TemporaryDirectory() as tmp:
        path, val, test = write_long(opts.dataset, Path(tmp))
        out = Path(tmp) / "out"
        flags = ["--data", "long", "--root_path", str(path.parent), "--data_path", path.name, "--val_size", str(val),
                 "--test_size", str(test), *FLAGS, *extra]
        code = run_main.main([*flags, "--output_dir", str(out / "results"), "--checkpoints", str(out / "ck")])
        if code:
            return code
        result = json.loads(next((out / "results").glob("*/results.json")).read_text())
        if opts.json:
            test_metrics = result["metrics"]["test"]
            Path(opts.json).write_text(json.dumps({
                "command": "python -m benchmarks.long_real " + " ".join(argv), "flags": flags,
                "device": device_name(torch.device(result["distributed"]["device"])), "precision": result["precision"],
                "series": result["data"]["series"], "samples": result["data"]["samples"],
                "test": {k: test_metrics[k] for k in ("mse", "mae", "samples", "intervals")},
                "baselines": test_metrics["baselines"], "per_series": test_metrics["per_series"],
                "timing": result["timing"]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
