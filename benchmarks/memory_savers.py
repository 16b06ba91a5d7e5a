"""Step time and peak memory of one configuration under each precision / DeepSpeed / memory-saver variant.

Each variant runs in its own process (peak memory is per process), builds exactly what training builds
(`engine.train.builders.build_training`) and times `--steps` optimizer steps after `--warmup` untimed ones.

    python -m benchmarks.memory_savers                       # CPU: ETTh1, GPT-2 shape, 6 layers, batch 8
    python -m benchmarks.memory_savers --batch_size 24 --variants all --json out.json   # on a GPU

Variants: plain, bf16, fp16 (GPU only), zero2, zero2-bf16, zero2-offload, zero2-ckpt (activation
checkpointing), each optionally on top of the precision. Prints a table and, with --json, writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.configs import SHARED_DATA

VARIANTS = {
    "plain": [],
    "bf16": ["--mixed_precision", "bf16"],
    "fp16": ["--mixed_precision", "fp16"],
    "ckpt": ["--gradient_checkpointing"],
    "zero2": ["--deepspeed"],
    "zero2-bf16": ["--deepspeed", "--mixed_precision", "bf16"],
    "zero2-fp16": ["--deepspeed", "--mixed_precision", "fp16"],
    "zero2-offload": ["--deepspeed", "--offload_optimizer", "cpu"],
    "zero2-ckpt": ["--deepspeed", "--gradient_checkpointing"],
}
CPU_DEFAULT = ["plain", "ckpt", "zero2", "zero2-offload", "zero2-ckpt", "zero2-bf16"]


def measure(flags: list[str], steps: int, warmup: int) -> dict:
    """Runs inside the child process: build, warm up, time steps, report peak memory."""
    import torch

    from timellm_launcher.engine.cli import prepare_process
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.report.memory import peak_memory_mb
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training
    from timellm_launcher.engine.train.loop import train_step

    prepare_process()
    cfg = config_from_args(build_parser("bench").parse_args(flags))
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    setup.model.train()
    batches, times, losses = iter(setup.loaders["train"]), [], []
    for i in range(warmup + steps):
        batch = next(batches)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses.append(train_step(setup, batch).item())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "losses_finite": all(map(lambda v: v == v and abs(v) < 1e30, losses)),
            "memory": peak_memory_mb(accelerator.device), "device": torch.cuda.get_device_name()
            if accelerator.device.type == "cuda" else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root_path", default=str(SHARED_DATA))
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default=",".join(CPU_DEFAULT), help="comma list, or 'all'")
    parser.add_argument("--json", default="")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    base = ["--data", "ETTh1", "--root_path", args.root_path, "--features", "M", "--seq_len", "512",
            "--pred_len", "96", "--d_model", "32", "--d_ff", "128", "--llm_model", "GPT2", "--llm_init", "random",
            "--llm_layers", "6", "--batch_size", str(args.batch_size), "--max_train_steps", "0", *extra]
    if args.child:
        print(json.dumps(measure(base + VARIANTS[args.child], args.steps, args.warmup)))
        return
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--child", name, "--root_path", args.root_path, "--batch_size",
               str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        row = {"variant": name, **(json.loads(lines[-1]) if proc.returncode == 0 and lines else
                                   {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})}
        rows.append(row)
        mem = row.get("memory", {})
        peak = mem.get("gpu_max_allocated_mb", mem.get("peak_rss_mb"))
        print(f"{name:14s} " + (f"step {row['step_s']:.3f} s  peak {peak:,.0f} MB "
                                f"({'GPU allocated' if 'gpu_max_allocated_mb' in mem else 'RSS'})  "
                                f"losses finite {row['losses_finite']}  device {row['device']}"
                                if "error" not in row else f"not run: {row['error']}"), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": base, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
