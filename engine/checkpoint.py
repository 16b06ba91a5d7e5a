"""Checkpoints that hold the trainable parameters only (the frozen LLM is reloaded from its source).

Layout of `<checkpoints>/<run>/`:
  best.safetensors   trainable weights of the best validation epoch (what the test set is scored with)
  last/              everything `--resume` needs: weights and optimizer (DeepSpeed: its own sharded
                     checkpoint, frozen parameters excluded), scheduler, progress, every rank's RNG
Every write goes to a temporary name first and is moved into place, so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.errors import UserError

DEEPSPEED_TAG = "zero"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True).contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(trainable_state(model), str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (train this setting first, or check --checkpoints)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: damaged checkpoint file, cannot be read ({str(err).splitlines()[0]})") from None
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise UserError(f"{path} does not match this model's trainable parameters "
                        "(was it trained with other --d_model/--d_ff/--llm_model flags?)")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if params[name].shape != tensor.shape:
                raise UserError(f"{path}: parameter {name} has shape {tuple(tensor.shape)}, the model expects "
                                f"{tuple(params[name].shape)}; check the model flags")
            params[name].copy_(tensor)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_deepspeed(model: nn.Module) -> bool:
    return hasattr(model, "save_checkpoint") and hasattr(model, "load_checkpoint")


def save_training_state(accelerator: Accelerator, model: nn.Module, raw_model: nn.Module,
                        optimizer: torch.optim.Optimizer, progress: dict[str, Any], folder: Path) -> None:
    """Called on every rank: each writes its share into folder.tmp, then the main process swaps it in."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if _is_deepspeed(model):
        model.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False, exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        save_weights(raw_model, tmp / "model.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        torch.save(progress, tmp / "training_state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def find_last(run_dir: Path) -> Path | None:
    """The newest complete state: `last`, or `last.old` when a crash hit between the two renames."""
    for name in ("last", "last.old"):
        if (run_dir / name / "training_state.pt").is_file():
            return run_dir / name
    return None


def load_training_state(accelerator: Accelerator, model: nn.Module, raw_model: nn.Module,
                        optimizer: torch.optim.Optimizer, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores weights and optimizer; returns (progress, this rank's RNG state) for the caller to apply."""
    if not (folder / "training_state.pt").is_file():
        raise UserError(f"--resume {folder}: no training_state.pt there (expected a checkpoint 'last' folder)")
    if _is_deepspeed(model):
        if not (folder / DEEPSPEED_TAG).is_dir():
            raise UserError(f"--resume {folder}: not a DeepSpeed checkpoint; resume with the precision/DeepSpeed "
                            "settings it was written with")
        model.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_module_strict=False,
                              load_optimizer_states=True, load_lr_scheduler_states=False)
    else:
        if not (folder / "model.safetensors").is_file():
            raise UserError(f"--resume {folder}: a DeepSpeed checkpoint; resume it with DeepSpeed enabled")
        load_weights(raw_model, folder / "model.safetensors")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    progress = torch.load(folder / "training_state.pt", weights_only=False)
    rng_file = folder / f"rng_rank{accelerator.process_index}.pt"
    rng = torch.load(rng_file if rng_file.is_file() else folder / "rng_rank0.pt", weights_only=False)
    return progress, rng
