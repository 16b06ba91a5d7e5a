"""Which SDPA kernels the CPU should use: training steps and evaluation batches under the math kernel alone (what
models/attention.py selects for training on CPUs) against every kernel (flash included: what evaluation re-enables),
interleaved in one process on the same model, batches and device.

    python -m benchmarks.attention_kernels                                  # the embedded default (MiniLM)
    python -m benchmarks.attention_kernels -- --data ETTh1 --root_path ../shared/data ...   # any run_main flags
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from timellm_launcher.engine.cli import prepare_process
from timellm_launcher.engine.config import build_parser, config_from_args
from timellm_launcher.engine.evaluate.loop import forecast
from timellm_launcher.engine.train.accelerator import build_accelerator
from timellm_launcher.engine.train.builders import build_training
from timellm_launcher.engine.train.loop import train_step

KERNELS = {"math": [SDPBackend.MATH], "all": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per kernel choice (after one warm-up)")
    parser.add_argument("--batches", type=int, default=3, help="eval batches / train steps per round")
    args, extra = parser.parse_known_args()
    prepare_process()
    cfg = config_from_args(build_parser("bench").parse_args([a for a in extra if a != "--"]))
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    eval_batches = [b for _, b in zip(range(args.batches), setup.loaders["val"], strict=False)]
    train_batches = iter(setup.loaders["train"])

    def evaluate() -> None:
        setup.model.eval()
        with torch.inference_mode():
            for batch in eval_batches:
                forecast(setup.model, batch).sum().item()

    def train() -> None:
        setup.model.train()
        for _ in range(args.batches):
            train_step(setup, next(train_batches)).item()

    times: dict[tuple[str, str], list[float]] = {(w, k): [] for w in ("eval", "train") for k in KERNELS}
    for round_ in range(args.rounds + 1):
        for work, fn in (("eval", evaluate), ("train", train)):
            for kernel in (KERNELS if round_ % 2 else reversed(list(KERNELS))):
                with sdpa_kernel(KERNELS[kernel]):
                    t0 = time.perf_counter()
                    fn()
                    if round_:
                        times[(work, kernel)].append(time.perf_counter() - t0)
    device = accelerator.device
    for work in ("eval", "train"):
        math_s, all_s = (statistics.median(times[(work, k)]) for k in KERNELS)
        print(f"{work:5s} {args.batches} batch(es): math kernel {math_s:.3f} s, all kernels {all_s:.3f} s, "
              f"math/all {math_s / all_s:.2f} (device {device}, {cfg.llm_model}, batch "
              f"{cfg.eval_batch_size if work == 'eval' else cfg.batch_size})")


if __name__ == "__main__":
    main()
