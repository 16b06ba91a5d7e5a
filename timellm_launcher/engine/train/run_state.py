"""What a run carries between optimizer steps and across restarts (its Progress, saved with the resumable state),
and the signals that interrupt it."""

from __future__ import annotations

import math
import signal
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class Interrupted(Exception):
    """A signal asked the run to stop: during training its state was saved first; during the test (where="test")
    the trained checkpoint is complete and only the scoring is lost."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(where)
        self.signum, self.where = signum, where


@contextmanager
def on_signals(handler: Callable[[int, Any], None]):
    """`handler` for SIGTERM and SIGINT inside the block, the previous handlers restored after it."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_on_signal(where: str):
    """SIGTERM/SIGINT stop the block at once (nothing to save there) as Interrupted(where)."""
    def stop(signum: int, _frame) -> None:
        raise Interrupted(signum, where)
    return on_signals(stop)


@dataclass
class Progress:
    """Where a run is; saved with the resumable state."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps done in the unfinished epoch
    global_step: int = 0
    loss_sum: float = 0.0  # of the unfinished epoch
    seconds: float = 0.0  # of the unfinished epoch
    best_score: float = math.inf  # the best validation's selection metric (MSE; sMAPE on M4)
    best_val_mae: float = math.inf
    best_epoch: int = 0  # the (1-based) epoch the best validation happened in, possibly mid-epoch
    best_step: int = 0  # global optimizer step of the best validation
    bad_validations: int = 0  # validations since the last improvement (early stopping counts these)
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch (run_report.epoch_line)
    validations: list[dict[str, Any]] = field(default_factory=list)  # every validation, mid-epoch ones too
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # stamped into best.safetensors and results.json

    def record_validation(self, epoch: int, score: float, val: dict[str, float]) -> bool:
        """Count one validation of (1-based) `epoch`, as early stopping counts them; True when `score` (the
        selection metric) is the best so far."""
        is_best = score < self.best_score
        if is_best:
            self.best_score, self.best_val_mae = score, val["mae"]
            self.best_epoch, self.best_step, self.bad_validations = epoch, self.global_step, 0
        else:
            self.bad_validations += 1
        self.validations.append({"epoch": epoch, "global_step": self.global_step, "step_in_epoch": self.step_in_epoch,
                                 "val_mse": val["mse"], "val_mae": val["mae"], "is_best": is_best})
        return is_best

    def close_epoch(self, record: dict[str, Any], patience: int, train_epochs: int) -> bool:
        """Keep the finished epoch's record and zero the unfinished epoch's counts; True when early stopping says
        stop (--patience validations without improvement)."""
        self.history.append(record)
        self.epoch, self.step_in_epoch, self.loss_sum, self.seconds = record["epoch"], 0, 0.0, 0.0
        stop = self.bad_validations >= patience
        self.finished = stop or self.epoch >= train_epochs
        return stop
