"""Train and test Time-LLM. `python run_main.py` alone runs the embedded default (see README).

    accelerate launch run_main.py --data ETTh1 --features M ...   # 1..N processes
"""

from __future__ import annotations

import sys

from engine.cli import run_cli
from engine.config import build_parser, config_from_args


def main(argv: list[str] | None = None) -> int:
    args = build_parser("Train and test Time-LLM-style forecasters.").parse_args(argv)

    def train_and_test() -> None:
        from engine.train.trainer import run_experiments  # heavy imports after argument parsing

        run_experiments(config_from_args(args))

    return run_cli(train_and_test)


if __name__ == "__main__":
    sys.exit(main())
