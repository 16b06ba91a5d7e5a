"""Memory measurements: the peaks results.json and the estimator report, and the phase readings the memory plan's
probes take (engine/estimate/memory_probe.py)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """GPU max_memory_allocated where the run is on a GPU, else this process's peak resident set.

    Linux reads VmHWM: getrusage's ru_maxrss carries over the launching process's peak through exec, so a run
    started from a large parent (a notebook, a test runner) would report the parent's size."""
    if device.type == "cuda":
        return {"gpu_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    peak = _status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {"peak_rss_mb": peak}


def _status_mb(key: str) -> float | None:
    """A VmRSS/VmHWM line of /proc/self/status in MB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class MemoryMeter:
    """Memory in use now and at the peak so far: the CUDA allocator's figures on a GPU, the process's resident set
    (file pages of memory-mapped weights included) on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        return _status_mb("VmRSS") or peak_memory_mb(self.device)["peak_rss_mb"]

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak_memory_mb(self.device)["peak_rss_mb"]
