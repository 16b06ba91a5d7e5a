"""Tables from results.json files: long-term (dataset x horizon, MSE/MAE, averages) and M4 (sMAPE/MASE/OWA).

    python -m timellm_launcher.engine.report.summarize results/ [more folders or results.json files] [--timing]

Runs of the same dataset, model variant and horizon (e.g. --itr repetitions) are averaged; the run count
is shown. The baselines each run was scored beside (last value, seasonal naive, linear) are rows of their own.
A model variant is the backbone with its layer count, "(random)" for --llm_init random, or
"no LLM". --timing adds training seconds, seconds per epoch and trainable parameters (the ablation table).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from timellm_launcher.engine.config import SHORT_TERM
from timellm_launcher.engine.evaluate.baselines import LABELS
from timellm_launcher.engine.evaluate.m4_metrics import PATTERN_ORDER, summarize_patterns


def find_results(paths: list[str]) -> list[dict[str, Any]]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(p.rglob("results.json")))
        else:
            raise SystemExit(f"error: {p}: no such file or folder")
    return [json.loads(f.read_text()) for f in files]


def dataset_name(cfg: dict[str, Any]) -> str:
    """ETTh1, a custom file's stem (weather, electricity ...), or pretrain->test for zero-shot."""
    name = Path(cfg["data_path"]).stem if cfg["data"] == "custom" and cfg.get("data_path") else cfg["data"]
    if cfg.get("data_pretrain"):
        source = cfg["data_pretrain"]
        if source == "custom" and cfg.get("data_path_pretrain"):
            source = Path(cfg["data_path_pretrain"]).stem
        return f"{source}->{name}"
    return name


def variant(result: dict[str, Any]) -> str:
    cfg = result["config"]
    if cfg["llm_model"].lower() == "none":
        return "no LLM"
    label = f"{cfg['llm_model']}-{result.get('model', {}).get('llm_layers', cfg['llm_layers'])}"
    return f"{label} (random)" if cfg["llm_init"] == "random" else label


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _baseline_results(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(variant, result-like record) per baseline scored beside this run, so the table lists them as rows."""
    baselines = result["metrics"]["test"].get("baselines") or {}
    return [(f"baseline: {LABELS.get(name, name)}", {"metrics": {"test": scores}, "config": result["config"]})
            for name, scores in baselines.items()]


def long_term_table(results: list[dict[str, Any]], timing: bool = False) -> str:
    """Models and the baselines scored on their windows (rows "baseline: ..."), MSE/MAE per horizon."""
    cells: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["config"]["task_name"] == "long_term_forecast":
            for name, record in [(variant(r), r), *_baseline_results(r)]:
                cells[(dataset_name(r["config"]), name)][r["config"]["pred_len"]].append(record)
    if not cells:
        return ""
    header = ["dataset", "model", "horizon", "MSE", "MAE", "runs"]
    if timing:
        header += ["train s", "s/epoch", "trainable"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (data, model), by_horizon in sorted(cells.items()):
        rows = []
        for horizon in sorted(by_horizon):
            runs = by_horizon[horizon]
            mse = mean(r["metrics"]["test"]["mse"] for r in runs)
            mae = mean(r["metrics"]["test"]["mae"] for r in runs)
            row = [data, model, str(horizon), _fmt(mse), _fmt(mae), str(len(runs))]
            if timing and "timing" not in runs[0]:
                row += ["", "", ""]
            elif timing:
                epochs = [s for r in runs for s in r["timing"]["train_epoch_s"]]
                row += [_fmt(mean(sum(r["timing"]["train_epoch_s"]) for r in runs), 1),
                        _fmt(mean(epochs) if epochs else None, 2), f"{runs[0]['params']['trainable']:,}"]
            rows.append((mse, mae, row))
        lines += ["| " + " | ".join(row) + " |" for _, _, row in rows]
        if len(rows) > 1:
            avg = ["", "", "Avg", _fmt(mean(m for m, _, _ in rows)), _fmt(mean(a for _, a, _ in rows)), ""]
            lines.append("| " + " | ".join(avg + ([""] * 3 if timing else [])) + " |")
    return "\n".join(lines)


def m4_table(results: list[dict[str, Any]]) -> str:
    by_model: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["config"]["task_name"] == SHORT_TERM:  # a results.json record, not a Config
            by_model[variant(r)][r["config"]["seasonal_patterns"]].append(r["metrics"]["test"])
    if not by_model:
        return ""
    lines = ["| model | pattern | series | SMAPE | MASE | OWA | Naive2 SMAPE | Naive2 MASE |", "|" + "---|" * 8]
    notes = []
    for model, patterns in sorted(by_model.items()):
        latest = {p: runs[-1] for p, runs in patterns.items()}  # one score set per pattern
        for name, row in summarize_patterns(latest).items():
            lines.append(f"| {model} | {name} | {row['series']} | {_fmt(row['smape'])} | {_fmt(row['mase'])} | "
                         f"{_fmt(row['owa'])} | {_fmt(row['naive2_smape'])} | {_fmt(row['naive2_mase'])} |")
        missing = [p for p in PATTERN_ORDER if p not in latest]
        if missing:
            notes.append(f"{model}: Others/Average need all six patterns; missing {', '.join(missing)}")
    return "\n".join(lines + [f"\n{n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize results.json files into benchmark tables.")
    parser.add_argument("paths", nargs="+", help="folders (searched recursively) or results.json files")
    parser.add_argument("--timing", action="store_true", help="add training time and trainable parameters")
    args = parser.parse_args(argv)
    results = find_results(args.paths)
    if not results:
        print(f"error: no results.json under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    tables = [t for t in (long_term_table(results, args.timing), m4_table(results)) if t]
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
