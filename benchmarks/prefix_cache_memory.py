"""Evaluation memory of a causal backbone with the prompt's prefix cache frozen for the last pass (what the model does)
against a cache that stores every pass's keys and values (a plain DynamicCache), each in a fresh process.

    python -m benchmarks.prefix_cache_memory [--rows 32] [--cache DIR] [-- extra run_main flags]

The model is the LLaMA-shaped 1.4 B folder of benchmarks/memory_plan.py (24 layers, 2048 wide, bf16; written once
into --cache), ETTh1 512 -> 96; one forward of --rows windows in inference mode after a one-window warm-up. Prints
the memory each forward adds to the process's peak resident set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("frozen", "stored")


def measure(mode: str, rows: int, flags: list[str]) -> float:
    """In the child: the peak resident set one forward of `rows` windows adds (MB)."""
    import torch

    import timellm_launcher.models.time_llm as time_llm
    from timellm_launcher.engine.cli import prepare_process
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.model_io import build_model
    from timellm_launcher.engine.report.memory import MemoryMeter
    from timellm_launcher.engine.runtime import configure_backends

    prepare_process()
    if mode == "stored":  # every pass keeps its keys and values until the forward ends
        time_llm.PrefixCache.update = lambda self, *args, **kwargs: time_llm.DynamicCache.update(self, *args, **kwargs)
    cfg = config_from_args(build_parser("probe").parse_args(flags))
    configure_backends(torch.device("cpu"), torch.bfloat16)
    model = build_model(cfg, "The ETT data.", torch.bfloat16).eval()
    meter = MemoryMeter(torch.device("cpu"))
    x = torch.randn(rows, cfg.seq_len, 1)
    with torch.inference_mode():
        model(x[:1])
        before = meter.peak_mb()
        model(x)
    return meter.peak_mb() - before


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        print(json.dumps(measure(argv[1], int(argv[2]), argv[3:])))
        return 0
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "time-llm-launcher"))
    opts = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    from benchmarks.configs import ett_root
    from benchmarks.memory_plan import LLAMA_1B
    from timellm_launcher.models.synthetic_backbone import cached_llama_folder

    folder = cached_llama_folder(opts.cache, "llama-1.4b-shape", **LLAMA_1B)
    flags = ["--data", "ETTh1", "--root_path", str(ett_root()), "--features", "S", "--seq_len", "512", "--pred_len",
             "96", "--d_model", "32", "--d_ff", "128", "--n_heads", "8", "--llm_model", "LLAMA", "--llm_path",
             str(folder), "--llm_layers", "24", *extra]
    added = {}
    for mode in MODES:
        done = subprocess.run([sys.executable, "-m", "benchmarks.prefix_cache_memory", "--child", mode,
                               str(opts.rows), *flags], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        added[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode:<7} prefix cache: one forward of {opts.rows} windows adds {added[mode]:,.0f} MB", flush=True)
    print(f"the frozen prefix cache needs {added['stored'] / added['frozen']:.1f}x less evaluation memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
