"""--log_with tensorboard|wandb|none: Accelerate's trackers, one per run, main process only.

Logged once per epoch at the run's global optimizer step (no extra host syncs in the step loop):
train/loss, train/lr, train/samples_per_s, train/epoch_s, train/bad_steps, val/mse, val/mae; at the
end test/mse and test/mae. TensorBoard events go beside results.json, in
<output_dir>/<run>/tensorboard/ (tensorboardX writes them when the tensorboard package is absent).
wandb is offline unless you set WANDB_MODE yourself (the launcher never touches the network unless
asked); its files go to <output_dir>/<run>/wandb/, `wandb sync` uploads them later.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker, TensorBoardTracker, WandBTracker

from core.errors import UserError
from engine.config import Config


def build_tracker(cfg: Config, run_name: str) -> GeneralTracker | None:
    """The started tracker of --log_with for this run, or None."""
    if cfg.log_with == "none":
        return None
    folder = Path(cfg.output_dir) / run_name
    if cfg.log_with == "tensorboard":
        if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise UserError("--log_with tensorboard: neither tensorboard nor tensorboardX is installed "
                            "(pip install tensorboardX)")
        tracker: GeneralTracker = TensorBoardTracker("tensorboard", folder)
    else:
        if importlib.util.find_spec("wandb") is None:
            raise UserError("--log_with wandb: the wandb package is not installed (pip install wandb)")
        os.environ.setdefault("WANDB_MODE", "offline")
        folder.mkdir(parents=True, exist_ok=True)
        tracker = WandBTracker("time-llm", name=run_name, dir=str(folder), config=cfg.to_dict())
    tracker.start()
    return tracker


def epoch_values(record: dict[str, Any], bad_steps: int) -> dict[str, float]:
    """Scalars of one epoch record (engine/train/trainer.py's EpochRecord as a dict)."""
    return {"train/loss": record["train_loss"], "train/lr": record["lr"], "train/samples_per_s":
            record["samples_per_s"], "train/epoch_s": record["seconds"], "train/bad_steps": bad_steps,
            "val/mse": record["val_mse"], "val/mae": record["val_mae"]}


def final_values(test: dict[str, float]) -> dict[str, float]:
    return {"test/mse": test["mse"], "test/mae": test["mae"]}
