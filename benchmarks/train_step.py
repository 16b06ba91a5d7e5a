"""Side-by-side training-step benchmark: the project's step against the reference Time-LLM hot path.

    python -m benchmarks.train_step --config etth1-gpt2-6l [--steps 12] [--warmup 3] [--json out.json]
    python -m benchmarks.train_step --config tiny --ablate          # one optimisation off at a time
    python -m benchmarks.train_step --config etth1-gpt2-6l -- --compile   # extra run_main flags after --

Both paths run in one process on the same device, from the same weights and the same batches; their steps
alternate (and which goes first alternates too) so machine noise hits both alike. The optimised step is
exactly what training runs: `engine.train.builders.build_training` + `engine.train.loop.train_steps`, data loading
included. The reference path is `benchmarks/reference_path.py`. The last line reads
`speedup X.XXx (optimised A steps/s vs reference B steps/s, device D, config C)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    from benchmarks.configs import CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="etth1-gpt2-6l")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per path (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per path first (compilation, caches)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument("--ablate", action="store_true",
                        help="instead: time the optimised step with each optimisation off, one at a time")
    parser.add_argument("--peak_tflops", type=float, default=0.0,
                        help="device peak for MFU (default: known GPUs' dense bf16/fp16 peak, TF32 in fp32)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(argv)
    from timellm_launcher.engine.cli import prepare_process

    prepare_process()
    import torch

    from benchmarks.configs import flags_for
    from benchmarks.measure import Bench

    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    bench = Bench(args.config, [*flags_for(args.config, device_type), *extra], peak_tflops=args.peak_tflops)
    report = bench.ablate(args.warmup, args.steps) if args.ablate else bench.compare(args.warmup, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
