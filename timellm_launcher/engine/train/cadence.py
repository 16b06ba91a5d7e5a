"""When to validate and when to score the test set during training (--val_every, --val_every_steps,
--test_every). Validation is what early stopping counts, so fewer validations mean fewer, larger chances."""

from __future__ import annotations

from typing import Protocol


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
