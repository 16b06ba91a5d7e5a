"""--log_with <tracker>: any of Accelerate's trackers (tensorboard, wandb, mlflow, aim, comet_ml, clearml, dvclive,
swanlab, trackio), one per run, main process only, built the way Accelerator.init_trackers builds them.

Hyperparameters: the run's whole Config, once, at the start. Scalars at the run's global optimizer step: per epoch
train/loss, train/lr, train/samples_per_s, train/epoch_s, train/bad_steps, val/mse, val/mae; every
--log_every_steps steps also train/loss_running (the epoch's mean loss so far: one host sync per log); at the end
test/mse and test/mae. Trackers that write files (tensorboard, aim, mlflow, dvclive) write under
<output_dir>/<run>/<tracker>/; wandb stays offline unless you set WANDB_MODE yourself (`wandb sync` uploads later),
and mlflow gets a local file store unless MLFLOW_TRACKING_URI says otherwise. The others talk to their own servers
as their own settings say: the launcher never touches the network unless you ask for such a tracker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, get_available_trackers

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config

PACKAGES = {"tensorboard": "tensorboardX", "comet_ml": "comet-ml"}  # pip names that differ from the tracker's


def hyperparameters(cfg: Config) -> dict[str, Any]:
    """The Config as trackers accept it: scalars only (a tuple such as --levels becomes text)."""
    return {k: (" ".join(map(str, v)) if isinstance(v, tuple | list) else v) for k, v in cfg.to_dict().items()}


def build_tracker(cfg: Config, run_name: str) -> GeneralTracker | None:
    """The started tracker of --log_with for this run, with the Config stored as its hyperparameters; or None."""
    if cfg.log_with == "none":
        return None
    name = cfg.log_with
    if name not in {str(t) for t in get_available_trackers()}:
        raise UserError(f"--log_with {name}: its package is not installed (pip install {PACKAGES.get(name, name)})")
    folder = Path(cfg.output_dir) / run_name
    folder.mkdir(parents=True, exist_ok=True)
    kind = LOGGER_TYPE_TO_CLASS[name]
    if name == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        tracker: GeneralTracker = kind("time-llm", name=run_name, dir=str(folder))
    elif name == "mlflow":
        os.environ.setdefault("MLFLOW_TRACKING_URI", (folder / "mlflow").resolve().as_uri())
        tracker = kind(run_name, logging_dir=str(folder / "mlflow"), run_name=run_name)
    elif name == "dvclive":
        tracker = kind(run_name, dir=str(folder / "dvclive"))
    elif kind.requires_logging_directory:
        tracker = kind(name, folder)
    else:
        tracker = kind(run_name)
    tracker.start()
    tracker.store_init_configuration(hyperparameters(cfg))
    return tracker


def epoch_values(record: dict[str, Any], bad_steps: int) -> dict[str, float]:
    """Scalars of one epoch record (an entry of the trainer's Progress.history)."""
    return {"train/loss": record["train_loss"], "train/lr": record["lr"], "train/samples_per_s":
            record["samples_per_s"], "train/epoch_s": record["seconds"], "train/bad_steps": bad_steps,
            "val/mse": record["val_mse"], "val/mae": record["val_mae"]}


def final_values(test: dict[str, float]) -> dict[str, float]:
    return {"test/mse": test["mse"], "test/mae": test["mae"]}
