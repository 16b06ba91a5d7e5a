"""FLOPs of one training micro-batch, counted from the operators that really run, and the GPU peak for MFU.

Counting with torch's FlopCounterMode over forward + backward gets the frozen backbone right without a formula:
its weights get no gradients, so only the input-gradient matmuls of its backward are counted (about 2x forward,
not the 3x of a fully trained model). Gradients are taken with autograd.grad, which fills no .grad and fires no
DeepSpeed gradient hook, so the count leaves the optimizer untouched.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from timellm_launcher.models.time_llm import TimeLLM

# dense tensor-core peaks (TFLOP/s) per precision, from the vendors' data sheets; "tf32" is used for fp32
# matmuls when TF32 is allowed. Matched by substring of torch.cuda.get_device_name(), first hit wins.
GPU_PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("GH200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    ("RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    ("RTX 3090", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
    ("T4", {"fp16": 65.0, "fp32": 8.1}),
]


def training_flops(model: TimeLLM, x: torch.Tensor) -> int:
    """FLOPs of forward + backward for one input batch x [B, seq_len, N] (gradients of the trainable parameters)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    with FlopCounterMode(display=False) as counter:
        loss = model(x).float().square().mean()
        torch.autograd.grad(loss, trainable)
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, mixed_precision: str) -> float | None:
    """The device's dense peak for the run's matmul precision; None off GPUs or for an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if mixed_precision in ("bf16", "fp16"):
        kind = mixed_precision
    else:
        kind = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"
    for key, peaks in GPU_PEAK_TFLOPS:
        if key in name:
            return peaks.get(kind, peaks["fp32"])
    return None
