"""The three commands: train (run_main.py, `timellm-train`), estimate (estimate_training_time.py,
`timellm-estimate`) and forecast (forecast.py, `timellm-forecast`). Each parses its flags, then imports the heavy
parts, and turns a user error into one line and exit code 2 (engine/cli.py)."""

from __future__ import annotations

import argparse
import sys

from timellm_launcher.engine.cli import run_cli
from timellm_launcher.engine.config import build_parser, config_from_args


def train(argv: list[str] | None = None) -> int:
    """Train and test; with no flags, the embedded default (README)."""
    args = build_parser("Train and test Time-LLM-style forecasters.").parse_args(argv)

    def train_and_test() -> None:
        from timellm_launcher.engine.train.trainer import run_experiments

        run_experiments(config_from_args(args))

    return run_cli(train_and_test)


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    """The estimator's own flags, beside every run_main.py flag (parsed before anything heavy is imported, so
    bad flags fail fast)."""
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


def estimate(argv: list[str] | None = None) -> int:
    """Time real steps of a configuration and project the run, or plan its memory (--plan)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser("Estimate the training time of a run_main.py configuration.")
    add_estimator_arguments(parser)
    args = parser.parse_args(argv)

    def run() -> None:
        from timellm_launcher.engine.estimate.estimator import estimate_command

        estimate_command(args, argv)

    return run_cli(run)


def forecast_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Forecast a CSV with a trained run.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="the run's results folder (results/<run>) or its results.json")
    parser.add_argument("--root_path", default="", help="folder of --data_path (default: the training file's)")
    parser.add_argument("--data_path", default="",
                        help="CSV to forecast, with the training file's date column and variables "
                             "(default: the training file)")
    parser.add_argument("--output", default="",
                        help="CSV to write, or parquet when it ends in .parquet (default: forecast_<file>.csv, "
                             "rolling_<file>.csv under --rolling, in the run folder)")
    parser.add_argument("--plot", default="", help="also draw the history and the forecast into this PNG")
    parser.add_argument("--rolling", action="store_true",
                        help="backtest: forecast the file's windows beside their truth, a batch at a time, and "
                             "report MSE/MAE (scaled, and per variable in data units) beside the baselines")
    parser.add_argument("--n_windows", type=int, default=0,
                        help="with --rolling: the last N windows only (0: all)")
    parser.add_argument("--step_size", type=int, default=1,
                        help="with --rolling: rows between consecutive forecast origins")
    parser.add_argument("--test_only", action="store_true",
                        help="with --rolling: only windows inside the run's own test rows")
    parser.add_argument("--fillna", default="", choices=["", "none", "ffill", "zero"],
                        help="NaN/inf handling (default: what the run trained with)")
    parser.add_argument("--device", default="", choices=["", "cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--batch_size", type=int, default=0, help="windows per forward (default: the run's "
                                                                     "--eval_batch_size)")
    parser.add_argument("--checkpoint", default="",
                        help="the run's best.safetensors, when it is no longer where the run recorded it (it must "
                             "carry the run's id)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let a named --output/--plot replace an existing file (default names take the next "
                             "free _vN instead)")
    return parser


def forecast(argv: list[str] | None = None) -> int:
    """Forecast a file with a trained run, or backtest it (--rolling)."""
    args = forecast_parser().parse_args(argv)

    def run() -> None:
        from timellm_launcher.engine.forecast.cli import run_forecast

        run_forecast(run=args.run, root_path=args.root_path, data_path=args.data_path, output=args.output,
                     plot=args.plot, rolling=args.rolling, fillna=args.fillna or None, device=args.device or None,
                     batch_size=args.batch_size, checkpoint=args.checkpoint, overwrite=args.overwrite,
                     n_windows=args.n_windows, step_size=args.step_size, test_only=args.test_only)

    return run_cli(run)
