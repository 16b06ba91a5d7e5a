"""Forecast new data with a trained run (see README "Forecasting with a trained run").

    python forecast.py --run results/<run>                          # the next pred_len steps after the file
    python forecast.py --run results/<run> --data_path new.csv --plot forecast.png
    python forecast.py --run results/<run> --rolling --test_only    # the test windows, beside the truth, scored
"""

from __future__ import annotations

import argparse
import sys

from engine.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Forecast a CSV with a trained run.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="the run's results folder (results/<run>) or its results.json")
    parser.add_argument("--root_path", default="", help="folder of --data_path (default: the training file's)")
    parser.add_argument("--data_path", default="",
                        help="CSV to forecast, with the training file's date column and variables "
                             "(default: the training file)")
    parser.add_argument("--output", default="",
                        help="CSV to write (default: forecast_<file>.csv, rolling_<file>.csv under --rolling, "
                             "in the run folder)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def forecast() -> None:
        from engine.forecast.cli import run_forecast  # heavy imports after argument parsing

        run_forecast(run=args.run, root_path=args.root_path, data_path=args.data_path, output=args.output,
                     plot=args.plot, rolling=args.rolling, fillna=args.fillna or None, device=args.device or None,
                     batch_size=args.batch_size, checkpoint=args.checkpoint, overwrite=args.overwrite,
                     n_windows=args.n_windows, step_size=args.step_size, test_only=args.test_only)

    return run_cli(forecast)


if __name__ == "__main__":
    sys.exit(main())
