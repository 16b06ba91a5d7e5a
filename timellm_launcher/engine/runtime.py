"""The device a run executes on: its name, backend flags, host-memory handling, subnormals, torch.compile."""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import nn

from timellm_launcher.models.attention import choose_attention


def configure_backends(device: torch.device, dtype: torch.dtype) -> None:
    """On GPUs: TF32 tensor cores for fp32 matmuls/convolutions and cuDNN's autotuner (the shapes are static).
    On CPUs: large tensors reuse heap memory instead of fresh pages (see keep_host_memory)."""
    choose_attention(device, dtype)
    if device.type == "cpu":
        keep_host_memory(True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def flush_subnormals(enabled: bool = True) -> None:
    """Treat subnormal floats (below 1.2e-38 in fp32/bf16) as zero in CPU arithmetic (FTZ/DAZ), as TensorFlow does
    by default. Training sharpens the attention softmaxes, more and more probabilities underflow into the subnormal
    range, and x86 handles those on a slow path: without this a CPU step slows down the longer training runs
    (benchmarks/README.md, Subnormals). The setting is per thread and torch's worker threads copy it when they
    start, so entry points call this before any tensor work. Values this small change no result."""
    torch.set_flush_denormal(enabled)


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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}


def _libc():
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_host_memory(enabled: bool = True) -> bool:
    """Serve large host tensors from the heap and keep freed memory there (glibc). By default glibc maps every
    block above 32 MB freshly from the kernel and unmaps it on free, so each CPU step touches its large
    mapping-layer tensors as new pages, each page faulted in and zeroed by the kernel (benchmarks/README.md).
    Returns whether the setting applied; `enabled=False` restores glibc's defaults."""
    libc = _libc()
    if libc is None:
        return False
    if enabled:
        return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    return all(libc.mallopt(k, v) for k, v in _GLIBC_DEFAULTS.items())  # memory already kept stays kept


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo where there is one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
