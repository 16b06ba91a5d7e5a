"""Wall-clock and memory measurements reported in results.json."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """GPU max_memory_allocated where the run is on a GPU, else this process's peak resident set."""
    if device.type == "cuda":
        return {"gpu_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": peak / (2**20 if sys.platform == "darwin" else 2**10)}
