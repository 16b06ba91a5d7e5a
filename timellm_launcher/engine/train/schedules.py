"""Learning-rate schedules (`--lradj`), all stepped once per optimizer step; `plateau` also on each validation.

Epoch-wise schedules follow the Time-Series-Library tables: the rate for epoch e (1-based) is the
table's value for e-1, so epoch 1 always trains at --learning_rate. Unlike the reference Time-LLM
(where a one-cycle scheduler built for every schedule first divides the rate by 25), the rate each
epoch trains at is exactly the one printed for it. `TST` and `cosine` move every optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine import recipes

_TYPE2 = {2: 5e-5, 4: 1e-5, 6: 5e-6, 8: 1e-6, 10: 5e-7, 15: 1e-7, 20: 5e-8}
COS_ETA_MIN = 1e-8
PER_STEP = ("TST", "cosine")  # schedules whose rate moves inside an epoch


@dataclass(frozen=True)
class ScheduleParams:
    """The flags a schedule reads besides the base rate."""

    train_epochs: int
    pct_start: float = 0.2
    warmup_epochs: int = 0
    lr_step_size: int = 1
    lr_gamma: float = 0.5
    lr_milestones: tuple[int, ...] = ()
    cos_epochs: int = 0  # COS period (0: train_epochs)
    start_div: float = 1.0  # epoch 1 trains at lr / start_div (engine/recipes.py: the reference's lr/25)
    table_div: float = 1.0  # the epoch tables start from lr / table_div


def parse_milestones(text: str) -> tuple[int, ...]:
    """`--lr_milestones "3,6"` -> (3, 6): the epochs after which multistep decays."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UserError(f"--lr_milestones {text!r}: give comma-separated epoch numbers, e.g. 3,6") from None
    if not values or any(v <= 0 for v in values) or list(values) != sorted(set(values)):
        raise UserError(f"--lr_milestones {text!r}: give increasing positive epoch numbers, e.g. 3,6 "
                        "(needed by --lradj multistep)")
    return values


def epoch_lr(lradj: str, epoch: int, lr: float, params: ScheduleParams) -> float:
    """Learning rate of 1-based `epoch` for the epoch-wise schedules: epoch 1 at lr / start_div, later epochs from
    the table (based at lr / table_div); a table with no entry yet keeps epoch 1's rate (type2 before epoch 3)."""
    done = epoch - 1  # epochs finished before this one
    start, base_lr = lr / params.start_div, lr / params.table_div
    if done == 0:
        return start
    if lradj == "constant":
        return base_lr
    if lradj == "type1":
        return base_lr * 0.5 ** (done - 1)
    if lradj == "type2":
        keys = [k for k in _TYPE2 if k <= done]
        return _TYPE2[max(keys)] if keys else start
    if lradj == "type3":
        return base_lr if done < 3 else base_lr * 0.9 ** (done - 3)
    if lradj == "COS":
        period = params.cos_epochs or params.train_epochs
        return COS_ETA_MIN + (base_lr - COS_ETA_MIN) * (1 + math.cos(math.pi * done / period)) / 2
    if lradj == "step":
        return base_lr * params.lr_gamma ** (done // params.lr_step_size)
    if lradj == "multistep":
        return base_lr * params.lr_gamma ** sum(1 for m in params.lr_milestones if m <= done)
    raise ValueError(f"unknown lradj {lradj}")


def cosine_step_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """`cosine`: linear warm-up to base_lr over warmup_steps (0-based step s trains at base_lr*(s+1)/W), then a
    half cosine from base_lr down to COS_ETA_MIN at the last step."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return COS_ETA_MIN + (base_lr - COS_ETA_MIN) * (1 + math.cos(math.pi * progress)) / 2


class ValidationPlateau(ReduceLROnPlateau):
    """`plateau`: each validation that does not beat the best validation MSE so far multiplies the rate by
    --lr_gamma. The per-optimizer-step call (no metric) is a no-op, so the trainer steps every schedule alike."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        super().__init__(optimizer, mode="min", factor=gamma, patience=0, threshold=0.0, min_lr=0.0, eps=0.0)

    def step(self, metrics: float | None = None) -> None:  # type: ignore[override]
        if metrics is not None:
            super().step(metrics)


def observe_validation(scheduler: LRScheduler, val_mse: float) -> None:
    """The trainer's one hook: schedules that react to the validation score see it here."""
    if isinstance(scheduler, ValidationPlateau):
        scheduler.step(val_mse)


def build_scheduler(optimizer: Optimizer, lradj: str, base_lr: float, steps_per_epoch: int,
                    params: ScheduleParams) -> LRScheduler:
    total = max(params.train_epochs * steps_per_epoch, 1)
    if lradj == "TST":
        return OneCycleLR(optimizer, max_lr=base_lr, total_steps=total, pct_start=params.pct_start)
    if lradj == "cosine":
        if params.warmup_epochs >= params.train_epochs:
            raise UserError(f"--warmup_epochs {params.warmup_epochs} must be below --train_epochs "
                            f"{params.train_epochs} for --lradj cosine")
        warmup = params.warmup_epochs * steps_per_epoch
        return LambdaLR(optimizer, lambda step: cosine_step_lr(step, base_lr, warmup, total) / base_lr)
    if lradj == "plateau":
        return ValidationPlateau(optimizer, params.lr_gamma)
    return LambdaLR(optimizer, lambda step: epoch_lr(lradj, step // steps_per_epoch + 1, base_lr, params) / base_lr)


def schedule_params(cfg) -> ScheduleParams:
    """The schedule flags of a Config (multistep requires --lr_milestones) and what its --recipe adds."""
    milestones = parse_milestones(cfg.lr_milestones) if cfg.lradj == "multistep" else ()
    return ScheduleParams(train_epochs=cfg.train_epochs, pct_start=cfg.pct_start, warmup_epochs=cfg.warmup_epochs,
                          lr_step_size=cfg.lr_step_size, lr_gamma=cfg.lr_gamma, lr_milestones=milestones,
                          cos_epochs=recipes.cos_epochs(cfg), **recipes.schedule_divisors(cfg))


# ---------------------------------------------------------------------------------------------- cadence
# When to validate and when to score the test set during training (--val_every, --val_every_steps, --test_every).
# Validation is what early stopping counts, so fewer validations mean fewer, larger chances.

class CadenceFlags(Protocol):
    """The flags the rules read: a Config, or the estimator's projection.Cadence (one set of rules for both)."""

    train_epochs: int
    val_every: int
    val_every_steps: int
    test_every: int


def validate_after_epoch(cfg: CadenceFlags, epochs_done: int) -> bool:
    """Every --val_every epochs, and always after the last epoch (so a best checkpoint exists)."""
    return epochs_done % cfg.val_every == 0 or epochs_done >= cfg.train_epochs


def validate_after_step(cfg: CadenceFlags, global_step: int, epoch_done: bool) -> bool:
    """Every --val_every_steps optimizer steps inside an epoch; the epoch's last step is left to the epoch end."""
    return bool(cfg.val_every_steps) and not epoch_done and global_step % cfg.val_every_steps == 0


def score_test_after_epoch(cfg: CadenceFlags, epochs_done: int) -> bool:
    """--test_every N > 0: also score the test set every N epochs (recorded in history, not used to select)."""
    return cfg.test_every > 0 and epochs_done % cfg.test_every == 0
