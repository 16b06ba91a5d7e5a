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
