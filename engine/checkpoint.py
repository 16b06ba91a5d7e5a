"""Checkpoints that hold the trainable parameters only (the frozen LLM is reloaded from its source).

Layout of `<checkpoints>/<run>/`:
  best.safetensors   trainable weights of the best validation epoch (what is tested)
  last/              model.safetensors + training_state.pt (optimizer, scheduler, RNG, progress)
Every write goes to a temporary name first and is moved into place, so a crash mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.errors import UserError


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
    state = load_file(str(path))
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


def save_training_state(model: nn.Module, state: dict[str, Any], folder: Path) -> None:
    """Write `folder` as a whole: into folder.tmp, then swapped in (the old copy survives until then)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    torch.save(state, tmp / "training_state.pt")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
