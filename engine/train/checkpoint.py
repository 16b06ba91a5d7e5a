"""Checkpoints that hold the trainable parameters only (the frozen LLM is reloaded from its source).

Layout of `<checkpoints>/<run>/`:
  best.safetensors   trainable weights of the best validation epoch (what the test set is scored with)
  last/              everything `--resume` needs: weights and optimizer (DeepSpeed: its own sharded
                     checkpoint, frozen parameters excluded), scheduler, progress, every rank's RNG
  previous/          the state saved before last/: resume falls back to it when last/ is damaged
Every write goes to a temporary name first and is moved into place, so a crash mid-write leaves the
previous checkpoint intact. """

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
from safetensors.torch import load_file, save_file
from torch import nn

from core.errors import UserError
from core.files import atomic_path

DEEPSPEED_TAG = "zero"
STATES = ("last", "previous")  # resumable states, newest first


class DamagedCheckpoint(UserError):
    """A checkpoint file exists but cannot be read (truncated, overwritten, not what its name says)."""


def _read(path: Path, reader):
    """reader(path), with any failure to parse the file reported as one line naming it."""
    try:
        return reader(path)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: missing from the checkpoint") from None
    except Exception as err:  # noqa: BLE001 (torch.load and safetensors raise many types on damaged bytes)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DamagedCheckpoint(f"{path}: damaged checkpoint file, cannot be read ({first[:200]})") from None


def _torch_file(path: Path) -> Any:
    return _read(path, lambda p: torch.load(p, weights_only=False))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True).contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(trainable_state(model), str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (train this setting first, or check --checkpoints)")
    state = _read(path, lambda p: load_file(str(p)))
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
                        optimizer: torch.optim.Optimizer, progress: dict[str, Any], run_dir: Path) -> None:
    """Called on every rank: each writes its share into last.tmp, then the main process moves last/ to previous/
    and last.tmp/ to last/. A crash at any point leaves at least one complete state."""
    folder = run_dir / STATES[0]
    tmp, previous = run_dir / (STATES[0] + ".tmp"), run_dir / STATES[1]
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
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(folder, previous)
        os.replace(tmp, folder)
    accelerator.wait_for_everyone()


def find_states(run_dir: Path) -> list[Path]:
    """The resumable states of a run folder, newest first (last/, then previous/)."""
    return [run_dir / name for name in STATES if (run_dir / name / "training_state.pt").is_file()]


def load_training_state(accelerator: Accelerator, model: nn.Module, raw_model: nn.Module,
                        optimizer: torch.optim.Optimizer, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores weights and optimizer; returns (progress, this rank's RNG state) for the caller to apply.
    A file that cannot be read raises DamagedCheckpoint naming it."""
    if not (folder / "training_state.pt").is_file():
        raise UserError(f"--resume {folder}: no training_state.pt there (expected a checkpoint 'last' folder)")
    progress = _torch_file(folder / "training_state.pt")
    rng_file = folder / f"rng_rank{accelerator.process_index}.pt"
    rng = _torch_file(rng_file if rng_file.is_file() else folder / "rng_rank0.pt")
    if _is_deepspeed(model):
        if not (folder / DEEPSPEED_TAG).is_dir():
            raise UserError(f"--resume {folder}: not a DeepSpeed checkpoint; resume with the precision/DeepSpeed "
                            "settings it was written with")
        for part in sorted((folder / DEEPSPEED_TAG).glob("*.pt")):
            _torch_file(part)
        model.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_module_strict=False,
                              load_optimizer_states=True, load_lr_scheduler_states=False)
    else:
        if not (folder / "model.safetensors").is_file():
            raise UserError(f"--resume {folder}: a DeepSpeed checkpoint; resume it with DeepSpeed enabled")
        optimizer_state = _torch_file(folder / "optimizer.pt")
        load_weights(raw_model, folder / "model.safetensors")
        optimizer.load_state_dict(optimizer_state)
    return progress, rng
