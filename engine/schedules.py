"""Learning-rate schedules (`--lradj`), all stepped once per optimizer step.

Epoch-wise schedules follow the Time-Series-Library tables: the rate for epoch e (1-based) is the
table's value for e-1, so epoch 1 always trains at --learning_rate. Unlike the reference Time-LLM
(where a one-cycle scheduler built for every schedule first divides the rate by 25), the rate each
epoch trains at is exactly the one printed for it.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

_TYPE2 = {2: 5e-5, 4: 1e-5, 6: 5e-6, 8: 1e-6, 10: 5e-7, 15: 1e-7, 20: 5e-8}
COS_ETA_MIN = 1e-8


def epoch_lr(lradj: str, epoch: int, base_lr: float, train_epochs: int) -> float:
    """Learning rate of 1-based `epoch` for the epoch-wise schedules."""
    done = epoch - 1  # epochs finished before this one
    if lradj == "constant" or done == 0:
        return base_lr
    if lradj == "type1":
        return base_lr * 0.5 ** (done - 1)
    if lradj == "type2":
        keys = [k for k in _TYPE2 if k <= done]
        return _TYPE2[max(keys)] if keys else base_lr
    if lradj == "type3":
        return base_lr if done < 3 else base_lr * 0.9 ** (done - 3)
    if lradj == "COS":
        return COS_ETA_MIN + (base_lr - COS_ETA_MIN) * (1 + math.cos(math.pi * done / train_epochs)) / 2
    raise ValueError(f"unknown lradj {lradj}")


def build_scheduler(optimizer: Optimizer, lradj: str, base_lr: float, train_epochs: int,
                    steps_per_epoch: int, pct_start: float) -> LRScheduler:
    if lradj == "TST":
        return OneCycleLR(optimizer, max_lr=base_lr, total_steps=max(train_epochs * steps_per_epoch, 1),
                          pct_start=pct_start)
    return LambdaLR(optimizer, lambda step: epoch_lr(lradj, step // steps_per_epoch + 1, base_lr,
                                                     train_epochs) / base_lr)
