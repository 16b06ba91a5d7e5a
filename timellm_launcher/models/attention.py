"""Which SDPA kernels the backbone attends with: one choice for training, every kernel for inference."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def choose_attention(device: torch.device, dtype: torch.dtype) -> None:
    """The backbone always attends through SDPA; this picks its kernels for training. On CPUs in bf16/fp16 only the
    math kernel (matmul-softmax-matmul) stays enabled: torch's CPU flash-attention backward is slower there
    (benchmarks/README.md, SDPA kernels on the CPU); in fp32 and on GPUs torch chooses. The switches are
    process-wide (so activation checkpointing's recomputation sees the same kernel) and evaluation re-enables every
    kernel (eval_attention). The result is the same either way."""
    fused = not (device.type == "cpu" and dtype in (torch.bfloat16, torch.float16))
    torch.backends.cuda.enable_flash_sdp(fused)  # despite the name, these switches cover every device
    torch.backends.cuda.enable_mem_efficient_sdp(fused)


def eval_attention():
    """Inference has no backward, and there the fused kernels win on CPUs too (benchmarks/README.md, SDPA kernels
    on the CPU)."""
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.MATH])
