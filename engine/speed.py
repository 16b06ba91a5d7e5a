"""Run-time speed settings the builders apply: backend flags and torch.compile of the repeated blocks."""

from __future__ import annotations

import torch
from torch import nn


def configure_backends(device: torch.device) -> None:
    """On GPUs: TF32 tensor cores for fp32 matmuls/convolutions and cuDNN's autotuner (the shapes are static)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def repeated_blocks(llm: nn.Module) -> nn.ModuleList | None:
    """The backbone's stack of identical transformer layers (GPT-2 `h`, LLaMA/BERT `layers`/`layer`)."""
    for owner in (llm, getattr(llm, "encoder", None)):
        for name in ("h", "layers", "layer"):
            blocks = getattr(owner, name, None) if owner is not None else None
            if isinstance(blocks, nn.ModuleList) and len(blocks):
                return blocks
    return None


def compile_regions(model: nn.Module, llm: nn.Module, mode: str) -> None:
    """Regional compilation: each backbone layer is compiled in place (one graph, reused by every layer since
    they share their code), the rest of the model stays eager. The cold start is one layer's compile rather
    than the whole model's, and the prompt's data-dependent gathers never reach the compiler."""
    blocks = repeated_blocks(llm)
    if blocks is None:
        model.compile(mode=mode)
        return
    for block in blocks:
        block.compile(mode=mode, dynamic=False)
