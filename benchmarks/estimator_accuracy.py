"""How right is estimate_training_time.py? Estimate a run, then do the run, and compare epoch by epoch.

    python -m benchmarks.estimator_accuracy                       # tiny, then etth1-gpt2-6l
    python -m benchmarks.estimator_accuracy --config tiny --repeat 3
    python -m benchmarks.estimator_accuracy --config etth1-gpt2-6l -- --mixed_precision bf16   # extra flags
    python -m benchmarks.estimator_accuracy --config tiny --csv exchange_rate.csv --repeat 3   # other data

Each configuration runs twice as a user would run it, in fresh processes: first the estimator, then run_main.py
with the same flags (outputs in a temporary folder, removed afterwards). The run's results.json holds the
measured training seconds of each epoch (timing.train_epoch_s, what the estimator projects) and the fit + test
seconds (timing.total_s). With --repeat N the pairs run one after the other (estimate, run, estimate, run, ...),
so a slow or fast spell of the machine falls on both sides alike, and a summary per configuration separates the
estimator's own error (mean projected against mean measured) from the machine's (how far the identical runs
spread). The last line per configuration reads
`estimator accuracy <config> on <data>: mean <err>% over N pairs (pairs <min>%..<max>%), fit+test <err>%; identical runs
spread ±<s>% | device`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.configs import SHARED_DATA
from timellm_launcher.engine.recipes import TINY_FLAGS

ROOT = Path(__file__).resolve().parents[1]

# --max_train_steps keeps each run to minutes; --features S keeps validation and test affordable
CONFIGS: dict[str, list[str]] = {
    "tiny": ["--data", "ETTh1", "--features", "S", *TINY_FLAGS, "--batch_size", "16", "--eval_batch_size", "256",
             "--train_epochs", "3", "--max_train_steps", "150"],
    "etth1-gpt2-6l": ["--data", "ETTh1", "--features", "S", "--seq_len", "512", "--pred_len", "96",
                      "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "6", "--d_model", "32",
                      "--d_ff", "128", "--n_heads", "8", "--num_tokens", "1000", "--patch_len", "16",
                      "--stride", "8", "--batch_size", "8", "--learning_rate", "0.001", "--train_epochs", "2",
                      "--max_train_steps", "40", "--mixed_precision", "no"],
}
# ETTh1's fixed 12/4/4-month split makes one GPT-2-shape validation pass of 2,785 windows cost minutes on a CPU:
# that configuration reads the first ROWS rows of ETTh1.csv as `--data custom` (70/10/20 split) instead
ROWS = {"tiny": 0, "etth1-gpt2-6l": 2000}


def run(command: list[str]) -> float:
    """Run a command to completion (its output shown), return its wall seconds; stop on failure."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - started


def error_pct(projected: float, measured: float) -> float:
    return 100.0 * (projected - measured) / measured


def data_flags(root_path: str, csv: str, rows: int, folder: Path) -> tuple[list[str], str]:
    """(flags, label): ETTh1 with its own split, another CSV as --data custom, or the first `rows` rows of either
    copied into the temporary folder as a custom CSV."""
    if not rows:
        if csv == "ETTh1.csv":
            return ["--root_path", root_path], "ETTh1"
        return ["--data", "custom", "--root_path", root_path, "--data_path", csv], f"{csv} (custom)"
    with (Path(root_path) / csv).open(encoding="utf-8") as src:
        head = [line for _, line in zip(range(rows + 1), src, strict=False)]
    (folder / f"head_{csv}").write_text("".join(head), encoding="utf-8")
    return (["--data", "custom", "--root_path", str(folder), "--data_path", f"head_{csv}"],
            f"{csv} first {rows} rows (custom)")


def measure(name: str, flags: list[str], folder: Path) -> dict:
    """One estimate and the real run it predicts; returns both sides per epoch and for the whole fit."""
    estimate_path = folder / "estimate.json"
    estimate_s = run([sys.executable, "estimate_training_time.py", *flags, "--output", str(estimate_path)])
    real_s = run([sys.executable, "run_main.py", *flags, "--output_dir", str(folder / "results"),
                  "--checkpoints", str(folder / "checkpoints")])
    estimate = json.loads(estimate_path.read_text())
    result = json.loads(next((folder / "results").glob("*/results.json")).read_text())
    p, measured = estimate["projection"], result["timing"]["train_epoch_s"]
    projected = [e["train_s"] for e in p["run"]["per_epoch"]][:len(measured)]
    return {"config": name, "device": f"{estimate['device']['type']}: {estimate['device']['name']}",
            "projected_epochs": projected, "measured_epochs": measured,
            "projected_fit_test_s": p["run"]["total_s"] - p["run"]["setup_s"],  # results' total_s has no setup
            "measured_fit_test_s": result["timing"]["total_s"], "estimator_wall_s": estimate_s,
            "run_wall_s": real_s, "projected_wall_s": p["total_s"]}


def report(m: dict) -> str:
    lines = [f"{m['config']} on {m['data']} ({m['device']})", "  epoch  projected train s  measured train s  error"]
    for i, (proj, real) in enumerate(zip(m["projected_epochs"], m["measured_epochs"], strict=True)):
        lines.append(f"  {i + 1:>5}  {proj:>17.2f}  {real:>16.2f}  {error_pct(proj, real):+6.1f}%")
    total = error_pct(sum(m["projected_epochs"]), sum(m["measured_epochs"]))
    first = error_pct(m["projected_epochs"][0], m["measured_epochs"][0])
    later = (error_pct(sum(m["projected_epochs"][1:]), sum(m["measured_epochs"][1:]))
             if len(m["measured_epochs"]) > 1 else float("nan"))
    fit = error_pct(m["projected_fit_test_s"], m["measured_fit_test_s"])
    lines.append(f"  fit + test (validation, checkpoints, final test): projected {m['projected_fit_test_s']:.1f} s, "
                 f"measured {m['measured_fit_test_s']:.1f} s ({fit:+.1f}%)")
    lines.append(f"  estimator took {m['estimator_wall_s']:.1f} s; the run took {m['run_wall_s']:.1f} s "
                 f"(projected {m['projected_wall_s']:.1f} s without process start-up)")
    lines.append(f"pair: train epochs {total:+.1f}% (epoch 1 {first:+.1f}%, later {later:+.1f}%), "
                 f"fit+test {fit:+.1f}%")
    return "\n".join(lines)


def spread_pct(values: list[float]) -> float:
    """Half the range, in percent of the mean: ±x% covers every value."""
    return 100.0 * (max(values) - min(values)) / 2 / (sum(values) / len(values))


def noise_floor(measured: list[float]) -> list[float]:
    """Error of predicting each run by the mean of the others: what the machine alone contributes."""
    total = sum(measured)
    return [error_pct((total - m) / (len(measured) - 1), m) for m in measured]


def summarize(pairs: list[dict]) -> str:
    """The estimator's own error (means of both sides) beside the machine's (the spread of identical runs)."""
    projected = [sum(m["projected_epochs"]) for m in pairs]
    measured = [sum(m["measured_epochs"]) for m in pairs]
    errors = [error_pct(p, r) for p, r in zip(projected, measured, strict=True)]
    mean_error = error_pct(sum(projected), sum(measured))
    fit = error_pct(sum(m["projected_fit_test_s"] for m in pairs), sum(m["measured_fit_test_s"] for m in pairs))
    name, device = f"{pairs[0]['config']} on {pairs[0]['data']}", pairs[0]["device"]
    lines = [f"{name}: {len(pairs)} estimate -> run pair(s), training seconds over all epochs",
             "  pair  projected  measured   error"]
    lines += [f"  {i + 1:>4}  {p:>9.2f}  {r:>8.2f}  {e:+6.1f}%"
              for i, (p, r, e) in enumerate(zip(projected, measured, errors, strict=True))]
    lines.append(f"  means: projected {sum(projected) / len(pairs):.2f} s, measured {sum(measured) / len(pairs):.2f} s "
                 f"({mean_error:+.1f}%); fit + test {fit:+.1f}%")
    lines.append(f"  the identical runs took {min(measured):.2f}-{max(measured):.2f} s (±{spread_pct(measured):.1f}%), "
                 f"the estimates projected {min(projected):.2f}-{max(projected):.2f} s (±{spread_pct(projected):.1f}%)")
    if len(pairs) > 2:
        floor = noise_floor(measured)
        lines.append(f"  noise floor: each run predicted by the mean of the other identical runs is off by "
                     f"{min(floor):+.1f}%..{max(floor):+.1f}% (the machine alone)")
    lines.append(f"estimator accuracy {name}: mean {mean_error:+.1f}% over {len(pairs)} pair(s) (pairs "
                 f"{min(errors):+.1f}%..{max(errors):+.1f}%), fit+test {fit:+.1f}%; identical runs spread "
                 f"±{spread_pct(measured):.1f}% | {device}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--root_path", default=str(SHARED_DATA), help="folder holding the CSV")
    parser.add_argument("--csv", default="ETTh1.csv",
                        help="data file in --root_path: ETTh1.csv (its 12/4/4-month split) or any CSV with a date "
                             "column first and the target OT (as --data custom, 70/10/20)")
    parser.add_argument("--repeat", type=int, default=1, help="estimate + run pairs per configuration")
    parser.add_argument("--rows", type=int, default=-1,
                        help="read the first N rows of the CSV as --data custom (0: the whole file; default: per "
                             "configuration, see ROWS)")
    parser.add_argument("--json", default="", help="also write every measurement to this file")
    parser.add_argument("extra", nargs="*", help="flags added to every run (after --)")
    args = parser.parse_args()
    if not (Path(args.root_path) / args.csv).is_file():
        sys.exit(f"--csv {args.csv}: no such file in --root_path {args.root_path}")
    names = list(CONFIGS) if args.config == "all" else [args.config]
    results = []
    for name in names:
        pairs = []
        for _ in range(args.repeat):
            rows = ROWS[name] if args.rows < 0 else args.rows
            with tempfile.TemporaryDirectory(prefix="estimator-accuracy-") as folder:
                data, label = data_flags(args.root_path, args.csv, rows, Path(folder))
                pairs.append(measure(name, [*CONFIGS[name], *data, *args.extra], Path(folder)))
                pairs[-1]["data"] = label
            print(report(pairs[-1]), flush=True)
        print(summarize(pairs), flush=True)
        results += pairs
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
