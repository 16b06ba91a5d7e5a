"""A LLaMA-7B Time-LLM end to end on this machine: plan, train, forecast and estimate, with the memory plan's
prediction beside every measured peak.

    python -m benchmarks.large_backbone [--cache DIR] [--batch_size 2] [--grad_accum 3] [--steps 3] [--json FILE]

Writes once into --cache (default ~/.cache/time-llm-launcher) a LLaMA-7B-shaped checkpoint folder: config
(32 layers, 4096 wide, 11008 FFN, 32 heads, vocabulary 32000), random bf16 weights as 2 GB safetensors shards, a
32000-token byte-level BPE tokenizer (models/synthetic_backbone.py). Then runs the real commands, each in its own
process, on ETTh1's first --rows rows as `--data custom` (ETTh1's own 12/4/4-month split would score 2,881 test
windows; here test is about a hundred), seq_len 512 -> pred_len 96, the target alone:

  1. estimate_training_time.py --plan      the memory plan of the training run
  2. run_main.py                           --steps optimizer steps of --grad_accum micro-batches, validation, test
  3. forecast.py --run <the run>           the next 96 steps after the file's end
  4. estimate_training_time.py             timed steps of the same flags: s/step, tokens/s, TFLOP/s

and reports load time, each process's peak resident set beside the plan's prediction, s/step, tokens/s and TFLOP/s
against this CPU's bf16 matmul rate, measured here first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.configs import ett_root
from timellm_launcher.models.synthetic_backbone import LLAMA_7B, cached_llama_folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "time-llm-launcher"


def bf16_matmul_gflops(size: int = 4096, repeats: int = 4) -> float:
    """This CPU's bf16 matrix-multiply rate: the best of `repeats` size x size x size products."""
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def run(name: str, args: list[str], log: Path) -> dict:
    """One command in its own process: wall seconds, exit code and its peak resident set (from wait4)."""
    print(f"[{name}] {' '.join(args)}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    text = log.read_text()
    if code != 0:
        raise SystemExit(f"[{name}] failed with exit code {code}; its output:\n{text[-3000:]}")
    print(f"  {wall:.0f} s, peak RSS {usage.ru_maxrss / 1024:,.0f} MB", flush=True)
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder for the 7B-shaped checkpoint")
    parser.add_argument("--batch_size", type=int, default=2, help="micro-batch")
    parser.add_argument("--grad_accum", type=int, default=3, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps trained")
    parser.add_argument("--rows", type=int, default=1000, help="rows of ETTh1 in the small file")
    parser.add_argument("--json", default="", help="also write the figures here")
    opts = parser.parse_args(argv)

    print(f"the LLaMA-7B-shaped checkpoint: {opts.cache}/llama-7b-shape (written once, 13.5 GB)", flush=True)
    folder = cached_llama_folder(opts.cache, "llama-7b-shape")
    rate = bf16_matmul_gflops()
    print(f"this CPU's bf16 matmul rate: {rate:,.0f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)

    work = Path(tempfile.mkdtemp(prefix="large-backbone-"))
    try:
        frame = pd.read_csv(ett_root() / "ETTh1.csv").head(opts.rows)
        frame.to_csv(work / "etth1_small.csv", index=False)
        flags = ["--data", "custom", "--root_path", str(work), "--data_path", "etth1_small.csv", "--features", "S",
                 "--seq_len", "512", "--pred_len", "96", "--llm_model", "LLAMA", "--llm_path", str(folder),
                 "--llm_layers", str(LLAMA_7B["num_hidden_layers"]), "--d_model", "32", "--d_ff", "128",
                 "--n_heads", "8", "--mixed_precision", "bf16", "--batch_size", str(opts.batch_size),
                 "--grad_accum", str(opts.grad_accum), "--eval_batch_size", "8"]
        results = {}
        results["plan"] = run("plan", ["estimate_training_time.py", *flags, "--plan", "--output",
                                       str(work / "plan.json")], work / "plan.log")
        plan = json.loads((work / "plan.json").read_text())
        results["train"] = run("train", ["run_main.py", *flags, "--train_epochs", "1", "--max_train_steps",
                                         str(opts.steps), "--output_dir", str(work / "results"), "--checkpoints",
                                         str(work / "checkpoints"), "--plot_windows", "0"], work / "train.log")
        record_file = next((work / "results").rglob("results.json"))
        record = json.loads(record_file.read_text())
        results["forecast"] = run("forecast", ["forecast.py", "--run", str(record_file.parent), "--output",
                                               str(work / "forecast.csv")], work / "forecast.log")
        results["estimate"] = run("estimate", ["estimate_training_time.py", *flags, "--warmup_batches", "1",
                                               "--measure_batches", "2", "--measure_seconds", "0",
                                               "--eval_batches", "1", "--output", str(work / "estimate.json")],
                                  work / "estimate.log")
        estimate = json.loads((work / "estimate.json").read_text())
        report = summarise(opts, folder, rate, plan, record, estimate, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report["table"])
    if opts.json:
        Path(opts.json).write_text(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=1))
    return 0


def summarise(opts, folder: Path, rate: float, plan: dict, record: dict, estimate: dict, results: dict) -> dict:
    """The figures, and the table printed at the end."""
    run_plan = plan["plans"][plan["run_plan"]]
    predicted = run_plan["peak_mb"]
    loaded = run_plan["components"]["runtime"] + run_plan["components"]["frozen"] + \
        run_plan["components"]["params"]
    measured = estimate["measured"]
    weights_gb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**30
    test = record["metrics"]["test"]
    figures = {
        "device": estimate["device"]["name"], "threads": estimate["device"]["cpu_threads"],
        "checkpoint_gb_on_disk": weights_gb, "bf16_matmul_gflops": rate,
        "load_s": record["timing"]["setup_s"], "after_load_rss_mb": record["memory"]["after_setup_mb"],
        "plan_after_load_mb": loaded,
        "train_peak_rss_mb": results["train"]["peak_rss_mb"], "plan_peak_mb": predicted,
        "forecast_peak_rss_mb": results["forecast"]["peak_rss_mb"],
        "estimate_peak_rss_mb": results["estimate"]["peak_rss_mb"],
        "step_s": measured["step_s"]["mean"], "micro_batch": opts.batch_size, "grad_accum": opts.grad_accum,
        "tokens_per_s": measured["tokens_per_s"], "tflops_per_s": measured["tflops_per_s"],
        "train_s": sum(record["timing"]["train_epoch_s"]), "test_s": record["timing"]["test_s"],
        "test_samples": test["samples"], "test_mse": test["mse"], "total_s": record["timing"]["total_s"],
        "wall_s": {k: v["wall_s"] for k, v in results.items()},
        "plan_verdict": plan["verdict"],
    }
    share = figures["tflops_per_s"] * 1000 / rate if figures["tflops_per_s"] else float("nan")
    gb = 1024
    lines = [
        f"LLaMA-7B-shaped Time-LLM (32 layers, 4096 wide, bf16, {weights_gb:.1f} GB on disk) on {figures['device']}, "
        f"{figures['threads']} threads; bf16 matmul rate {rate:,.0f} GFLOP/s",
        f"  load        {figures['load_s']:.0f} s; resident after loading {figures['after_load_rss_mb'] / gb:.2f} GB "
        f"(the weights stay memory-mapped until the first forward pages them in; the plan counts them resident: "
        f"{loaded / gb:.2f} GB)",
        f"  train       {opts.steps} steps x {opts.grad_accum} micro-batches of {opts.batch_size}: peak RSS "
        f"{figures['train_peak_rss_mb'] / gb:.2f} GB (plan: {predicted / gb:.2f} GB, "
        f"{100 * (predicted / figures['train_peak_rss_mb'] - 1):+.1f}%); test {test['samples']} windows in "
        f"{figures['test_s']:.0f} s",
        f"  forecast    peak RSS {figures['forecast_peak_rss_mb'] / gb:.2f} GB, {results['forecast']['wall_s']:.0f} s "
        "in all",
        f"  estimate    {figures['step_s']:.1f} s/step ({opts.grad_accum} x {opts.batch_size} rows), "
        f"{figures['tokens_per_s']:,.0f} LLM tokens/s, {figures['tflops_per_s']:.3f} TFLOP/s = {100 * share:.0f}% "
        f"of the bf16 matmul rate; peak RSS {figures['estimate_peak_rss_mb'] / gb:.2f} GB",
        f"  plan        verdict on this host: {'fits' if plan['verdict']['fits'] else 'does not fit'}",
    ]
    return {**figures, "table": "\n".join(lines)}


if __name__ == "__main__":
    sys.exit(main())
