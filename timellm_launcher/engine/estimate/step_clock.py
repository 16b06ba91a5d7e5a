"""Timestamps on the device's own timeline: perf_counter on CPUs, CUDA events on GPUs.

On a GPU the host runs ahead of the kernels it queues, so host clocks say when work was *queued*. A CUDA event
recorded at the same point completes when the GPU *reaches* it; differences between events are therefore what
the GPU spent, idle gaps (waiting for the host or for data) included, without synchronising every step.
"""

from __future__ import annotations

import time

import torch


class StepClock:
    """mark() a point; read seconds between marks with elapsed() after finish()."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def mark(self) -> object:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def finish(self) -> None:
        """Wait until every mark is reached (the one host sync of a measurement)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def elapsed(self, start: object, end: object) -> float:
        if not self.cuda:
            return end - start  # type: ignore[operator]
        return start.elapsed_time(end) / 1000.0  # type: ignore[attr-defined]
