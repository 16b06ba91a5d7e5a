"""Is the forecast worth having? Train Time-LLM end to end beside its no-LLM ablation and the baselines.

    python -m benchmarks.accuracy                                  # CPU: vic_elec, ETTh1, exchange_rate
    python -m benchmarks.accuracy --datasets ETTh1                 # one of them
    python -m benchmarks.accuracy --csv my.csv [-- --features M]   # any CSV with a date column and OT
    python -m benchmarks.accuracy --gpu --llm_path /models/llama-7b   # the published configurations on a GPU

Each configuration runs as a user would run it: `python run_main.py <flags>` in a fresh process, outputs in a
temporary folder. Every run scores the baselines (last value, seasonal naive, a least-squares linear map fit on
the train split) on exactly its own test windows (results.json `metrics.test.baselines`), so the table puts the
model, its no-LLM ablation, the baselines and, for published configurations, the paper's figure side by side.
CPU runs are cut to minutes (the table names the steps); they say whether the default recipe learns, not what
the published configuration reaches. The last line reads
`accuracy: model beats the best baseline on K of N datasets (<dataset>: yes|no, ...) | <device>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.configs import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]

# Time-LLM (Jin et al., ICLR 2024), Table 1, horizon 96, LLaMA-7B
PUBLISHED = {"ETTh1": (0.362, 0.392)}

# CPU: the embedded default's recipe (pretrained MiniLM with 2 layers, 2 x 250 steps of 32 at lr 5e-4, bf16 where
# the CPU has bf16 matrix units) on each dataset's benchmark windows
CPU_DATASETS: dict[str, list[str]] = {
    "vic_elec": [],  # the embedded default, exactly as `python run_main.py` runs it
    "ETTh1": ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--pred_len", "96"],
    "exchange_rate": ["--data", "custom", "--data_path", "exchange_rate.csv", "--features", "M", "--seq_len", "96",
                      "--pred_len", "96"],
}
# GPU: the published configurations (scripts/ETTh1.sh, horizon 96) under the reference's effective recipe
GPU_DATASETS: dict[str, list[str]] = {
    "ETTh1": ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--label_len", "48", "--pred_len", "96",
              "--d_model", "32", "--d_ff", "128", "--llm_model", "LLAMA", "--llm_layers", "32", "--batch_size", "24",
              "--learning_rate", "0.01", "--lradj", "type1", "--train_epochs", "100", "--max_train_steps", "0",
              "--recipe", "reference", "--mixed_precision", "bf16"],
}
VARIANTS = {"Time-LLM": [], "w/o LLM": ["--llm_model", "none"]}


def device_label(gpu: bool) -> str:
    """The device the runs used, with the CPU count on a CPU."""
    import torch

    from timellm_launcher.engine.runtime import device_name

    if gpu:
        return device_name(torch.device("cuda"))
    return f"{device_name(torch.device('cpu'))}, {os.cpu_count()} CPUs"


def train(flags: list[str], folder: Path) -> dict[str, Any]:
    """One run_main.py process; its results.json, or the error line it stopped with."""
    command = [sys.executable, "run_main.py", *flags, "--output_dir", str(folder / "results"),
               "--checkpoints", str(folder / "checkpoints"), "--plot_windows", "0"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}", "command": command}
    result = json.loads(next((folder / "results").glob("*/results.json")).read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def rows_of(name: str, runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: each variant, then the baselines of the first run that has them, then the published figure."""
    rows = []
    for label, result in runs.items():
        if "error" in result:
            rows.append({"forecaster": label, "error": result["error"]})
            continue
        history = result["history"]
        steps = f"{len(history)} x {history[0]['steps']}" if history else "-"
        batch = result["config"]["batch_size"] * result["config"]["grad_accum"]
        rows.append({"forecaster": label, "mse": result["metrics"]["test"]["mse"],
                     "mae": result["metrics"]["test"]["mae"], "steps": f"{steps} steps of {batch}",
                     "precision": result["distributed"]["mixed_precision"],
                     "train_s": sum(h["seconds"] for h in history), "samples": result["metrics"]["test"]["samples"]})
    scored = next((r for r in runs.values() if "error" not in r), None)
    if scored is not None:
        for baseline, scores in sorted(scored["metrics"]["test"]["baselines"].items(), key=lambda b: b[1]["mse"]):
            rows.append({"forecaster": f"baseline: {baseline.replace('_', ' ')}", "mse": scores["mse"],
                         "mae": scores["mae"]})
    if name in PUBLISHED:
        mse, mae = PUBLISHED[name]
        rows.append({"forecaster": "published Time-LLM (LLaMA-7B, full training)", "mse": mse, "mae": mae})
    return rows


def table(name: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"{name}:", "| forecaster | test MSE | test MAE | training | precision | train s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['forecaster']} | failed: {r['error']} | | | | |")
            continue
        train_s = f"{r['train_s']:.0f}" if "train_s" in r else ""
        lines.append(f"| {r['forecaster']} | {r['mse']:.4f} | {r['mae']:.4f} | {r.get('steps', '')} | "
                     f"{r.get('precision', '')} | {train_s} |")
    return "\n".join(lines)


def beats_best_baseline(runs: dict[str, dict[str, Any]]) -> bool | None:
    """Time-LLM's test MSE and MAE both below those of every baseline (None when it did not run)."""
    model = runs.get("Time-LLM")
    if model is None or "error" in model:
        return None
    test = model["metrics"]["test"]
    return all(test["mse"] < b["mse"] and test["mae"] < b["mae"] for b in test["baselines"].values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", help="names to run (default: all of the mode's datasets)")
    parser.add_argument("--csv", help="also run this CSV (a date column, then variables, target OT) as custom data")
    parser.add_argument("--root_path", default=str(SHARED_DATA), help="folder of ETTh1.csv and exchange_rate.csv")
    parser.add_argument("--gpu", action="store_true", help="the published configurations (needs a GPU and weights)")
    parser.add_argument("--json", default="", help="write every row and the device to this file")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    datasets = dict(GPU_DATASETS if args.gpu else CPU_DATASETS)
    if args.datasets:
        unknown = [d for d in args.datasets if d not in datasets]
        if unknown:
            parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(datasets)}")
        datasets = {d: datasets[d] for d in args.datasets}
    elif args.csv:
        datasets = {}
    if args.csv:
        csv = Path(args.csv).resolve()
        datasets[csv.stem] = ["--data", "custom", "--root_path", str(csv.parent), "--data_path", csv.name,
                              "--features", "S", "--target", "OT", "--seq_len", "96", "--pred_len", "96"]
    device = device_label(args.gpu)
    report: dict[str, Any] = {"device": device, "datasets": {}}
    verdicts = {}
    for name, flags in datasets.items():
        root = [] if "--root_path" in flags or name == "vic_elec" else ["--root_path", args.root_path]
        runs = {}
        for label, variant in VARIANTS.items():
            with tempfile.TemporaryDirectory(prefix="accuracy_") as tmp:
                print(f"{name}: {label} ...", flush=True)
                runs[label] = train([*flags, *root, *variant, *extra], Path(tmp))
        rows = rows_of(name, runs)
        print(table(name, rows) + "\n", flush=True)
        verdicts[name] = beats_best_baseline(runs)
        report["datasets"][name] = {"flags": [*flags, *extra], "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    ran = {n: v for n, v in verdicts.items() if v is not None}
    listed = ", ".join(f"{n}: {'yes' if v else 'no'}" for n, v in verdicts.items() if v is not None)
    print(f"accuracy: model beats the best baseline on {sum(ran.values())} of {len(ran)} datasets ({listed}) | "
          f"{device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
