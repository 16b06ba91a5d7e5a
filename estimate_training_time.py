"""How long will a run take, and which configuration is fastest? Times real training steps and evaluation
batches and projects epoch and run time (README: "Estimating run time").

    python estimate_training_time.py <run_main.py flags> [--warmup_batches 5] [--measure_batches 10]
        [--eval_batches 3] [--output estimate.json] [--compare "base=; amp=--use_amp"]

Takes every run_main.py flag (same parser, Config and builders, so it times exactly what training runs, under
`accelerate launch` and DeepSpeed too). Writes no checkpoint and no results file.
"""

from __future__ import annotations

import sys

from engine.cli import run_cli
from engine.config import build_parser
from engine.estimate.flags import add_estimator_arguments


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser("Estimate the training time of a run_main.py configuration.")
    add_estimator_arguments(parser)
    args = parser.parse_args(argv)

    def estimate() -> None:
        from engine.estimate.estimator import estimate_command

        estimate_command(args, argv)

    return run_cli(estimate)


if __name__ == "__main__":
    sys.exit(main())
