"""Progress of long loops: tqdm's bar on a terminal; where output goes to a file (a log, a scheduler's job, nohup)
a bar draws nothing useful, so plain lines at a steady cadence instead."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

LINE_SECONDS = 30.0  # a line at least this often,
LINE_FRACTION = 0.1  # and at every tenth of the total
QUIET_SECONDS = 5.0  # unless the last line is more recent than this (short loops stay silent)


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: 12.3 s, 4 min 05 s, 2 h 07 min."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class LogProgress:
    """tqdm's interface (update, set_postfix, close, iteration) writing lines such as
    `epoch 1/10: step 234/2342 (10%) | loss 0.4321 | 2 min 05 s elapsed, about 18 min 45 s left`."""

    def __init__(self, iterable: Iterable | None = None, *, total: int, desc: str, initial: int = 0,
                 unit: str = "step") -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.done = self.initial = initial
        self.postfix: dict[str, Any] = {}
        self.started = self.last_line = time.perf_counter()
        self.next_fraction = (math.floor(initial / max(total, 1) / LINE_FRACTION) + 1) * LINE_FRACTION

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        fraction = self.done / max(self.total, 1)
        crossed = fraction >= self.next_fraction - 1e-9
        while self.next_fraction <= fraction + 1e-9:
            self.next_fraction += LINE_FRACTION
        since = now - self.last_line
        if since >= LINE_SECONDS or (crossed and since >= QUIET_SECONDS):
            self.last_line = now
            print(self.line(now), flush=True)

    def line(self, now: float) -> str:
        elapsed = now - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        values = "".join(f" | {k} {v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {self.unit} {self.done:,}/{self.total:,} ({100 * self.done / max(self.total, 1):.0f}%)"
                f"{values} | {duration(elapsed)} elapsed, about {duration(left)} left")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str, show: bool,
             initial: int = 0, unit: str = "step") -> tqdm | LogProgress:
    """A bar on a terminal, plain lines elsewhere; nothing where `show` is False (every process but the main one)."""
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else 0
    if show and not sys.stderr.isatty():
        return LogProgress(iterable, total=total, desc=desc, initial=initial, unit=unit)
    return tqdm(iterable, total=total, desc=desc, initial=initial, leave=False, disable=not show, dynamic_ncols=True)
