"""The estimator's own flags (beside every run_main.py flag); light to import, so bad flags fail fast."""

from __future__ import annotations

import argparse


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    """The estimator's own flags, beside every run_main.py flag."""
    group = parser.add_argument_group("estimator")
    group.add_argument("--warmup_batches", type=int, default=5,
                       help="optimizer steps run first and left out of the statistics (compilation, caches)")
    group.add_argument("--measure_batches", type=int, default=10, help="timed optimizer steps (at least)")
    group.add_argument("--measure_seconds", type=float, default=5.0,
                       help="keep timing steps beyond --measure_batches until this much time is measured: ten short "
                            "steps sample too little of the machine to project from")
    group.add_argument("--eval_batches", type=int, default=3,
                       help="timed validation batches (the whole pass when the split has no more)")
    group.add_argument("--output", default="", help="also write the estimate as JSON to this file")
    group.add_argument("--compare", default="",
                       help='time several configurations: "name=flags; name=flags" or @FILE (one per line); '
                            "each adds its flags to the others given")
    group.add_argument("--peak_tflops", type=float, default=0.0,
                       help="the GPU's peak TFLOP/s for MFU (0: from the built-in table)")
    plan = parser.add_argument_group("memory plan")
    plan.add_argument("--plan", action="store_true",
                      help="instead of timing, plan the memory of one process without loading the model: the frozen "
                           "weights counted from the config, each step's memory measured on 1-4 layer proxies; says "
                           "whether it fits and the largest micro-batch that does")
    plan.add_argument("--device_memory", default="",
                      help="memory of the device planned for, e.g. 24GB or 80GiB (default: the GPU here, else the "
                           "host RAM)")
    plan.add_argument("--plan_device", default="auto", choices=["auto", "cpu", "cuda"],
                      help="plan for a CPU process (its resident set) or a GPU (allocated memory and the CUDA "
                           "context); auto: where this machine would run")
    plan.add_argument("--plan_processes", type=int, default=0,
                      help="processes the run will have (ZeRO-2 partitions the optimizer state over them); "
                           "0: WORLD_SIZE, else 1")
