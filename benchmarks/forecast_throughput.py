"""Forecast throughput: forecast.py's Forecaster beside the trainer's own test loop, on the same windows.

    python -m benchmarks.forecast_throughput                          # etth1-gpt2-6l shape, 1,400 rows of ETTh1
    python -m benchmarks.forecast_throughput --config tiny --rows 3000

A run is trained for one step (`run_main.py`, a fresh process) on the first --rows rows of ETTh1 as custom data
(70/10/20 split), so its test split holds a few hundred windows. Then, in this process, the trainer's test loop
(`engine.evaluate.loop.evaluate` over the prepared test loader, as `--is_training 0` runs it) and
`Forecaster.predict(test rows, rolling=True)` alternate for --rounds rounds. Both print windows per second (one
window = one sample the model forecasts: a variable's window under channel independence) and their test MSE,
which must agree. Last line: `forecast throughput X.XXx of the trainer's test loop (... | device)`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.accuracy import device_label
from benchmarks.configs import CONFIGS, ett_root, flags_for

ROOT = Path(__file__).resolve().parents[1]


def train_one_step(config: str, rows: int, folder: Path, device_type: str) -> tuple[Path, pd.DataFrame]:
    """A run of the configuration's shape on the file's first `rows` rows; (run folder, the file)."""
    frame = pd.read_csv(ett_root() / "ETTh1.csv").iloc[:rows]
    frame.to_csv(folder / "head.csv", index=False)
    flags = flags_for(config, device_type)
    flags[flags.index("--data") + 1] = "custom"
    flags[flags.index("--root_path") + 1] = str(folder)
    command = [sys.executable, "run_main.py", *flags, "--data_path", "head.csv", "--train_epochs", "1",
               "--max_train_steps", "1", "--plot_windows", "0", "--output_dir", str(folder / "results"),
               "--checkpoints", str(folder / "checkpoints")]
    proc = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"training the run failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
    return next((folder / "results").glob("*/results.json")).parent, frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="etth1-gpt2-6l", choices=sorted(CONFIGS))
    parser.add_argument("--rows", type=int, default=1400, help="rows of ETTh1 the run uses (the test split is 20%%)")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes of each, alternating")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()

    import torch

    from timellm_launcher.engine.cli import prepare_process
    from timellm_launcher.engine.config import Config
    from timellm_launcher.engine.evaluate.loop import evaluate
    from timellm_launcher.engine.forecast.forecaster import Forecaster
    from timellm_launcher.engine.model_io import load_weights
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.trainer import Trainer

    prepare_process()
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="forecast_bench_") as tmp:
        run, frame = train_one_step(args.config, args.rows, Path(tmp), device_type)
        result = json.loads((run / "results.json").read_text())
        cfg = Config(**{**result["config"], "is_training": 0})
        accelerator = build_accelerator(cfg)
        trainer = Trainer(cfg, accelerator, 0)
        load_weights(trainer.setup.raw_model, trainer.best_path)
        forecaster = Forecaster.load(run, device=device_type)
        a, b = result["data"]["borders"]["test"]
        rows = frame.iloc[a:b]

        def trainer_loop() -> tuple[float, int]:
            scored = evaluate(trainer.setup.model, trainer.setup.loaders["test"], accelerator, "test")
            return scored["mse"], scored["samples"]

        def forecaster_loop() -> tuple[float, int]:
            metrics = forecaster.predict(rows, rolling=True).attrs["metrics"]
            return metrics["mse"], metrics["windows"] * len(forecaster.layout.outputs)

        seconds: dict[str, list[float]] = {"trainer test loop": [], "forecaster": []}
        scores: dict[str, tuple[float, int]] = {}
        loops = {"trainer test loop": trainer_loop, "forecaster": forecaster_loop}
        for round_ in range(args.rounds + 1):  # round 0 warms both up
            order = list(loops) if round_ % 2 == 0 else list(reversed(loops))
            for name in order:
                if device_type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                scores[name] = loops[name]()
                if device_type == "cuda":
                    torch.cuda.synchronize()
                if round_:
                    seconds[name].append(time.perf_counter() - started)

    device = device_label(device_type == "cuda")
    figures = {}
    print(f"{args.config}, {args.rows} rows of ETTh1, precision {result['distributed']['mixed_precision']}, "
          f"eval batch {cfg.eval_batch_size}, device {device}")
    for name, times in seconds.items():
        mse, windows = scores[name]
        median = statistics.median(times)
        figures[name] = {"windows": windows, "median_s": median, "windows_per_s": windows / median, "mse": mse}
        print(f"  {name:18s} {windows} windows in {median:.2f} s (median of {len(times)}): "
              f"{windows / median:.1f} windows/s, test mse {mse:.6f}")
    ratio = figures["forecaster"]["windows_per_s"] / figures["trainer test loop"]["windows_per_s"]
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "rows": args.rows, "device": device,
                                               "figures": figures, "ratio": ratio}, indent=2))
    print(f"forecast throughput {ratio:.2f}x of the trainer's test loop (forecaster "
          f"{figures['forecaster']['windows_per_s']:.1f} vs trainer {figures['trainer test loop']['windows_per_s']:.1f}"
          f" windows/s, config {args.config} | {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
