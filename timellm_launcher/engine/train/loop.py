"""The training loop's body, the one the trainer runs and the estimator and the step benchmark time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator

from timellm_launcher.engine.config import Config
from timellm_launcher.engine.evaluate.loop import forecast
from timellm_launcher.engine.train.builders import TrainingSetup
from timellm_launcher.engine.train.losses import Loss
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard


def train_step(setup: TrainingSetup, batch: dict[str, torch.Tensor], accelerator: Accelerator, cfg: Config,
               criterion: Loss, guard: NonFiniteGuard | None = None) -> torch.Tensor:
    """One micro-batch; the optimizer steps when the accumulation window closes. Returns the detached loss
    (no host sync without a guard; the guard syncs once to check it)."""
    with accelerator.accumulate(setup.model):
        loss = criterion(forecast(setup.model, batch), batch)
        admitted = guard is None or guard.admit(loss)
        if admitted or guard.lockstep_backward:
            accelerator.backward(loss if admitted else guard.zero_loss())
        if accelerator.sync_gradients and guard is not None and guard.window_is_bad():
            setup.optimizer.zero_grad(set_to_none=True)  # skipped: the weights stay the last good ones
        else:
            if accelerator.sync_gradients and cfg.max_grad_norm > 0 and accelerator.state.deepspeed_plugin is None:
                accelerator.clip_grad_norm_(setup.trainable, cfg.max_grad_norm)  # DeepSpeed clips inside its step
            setup.optimizer.step()
            setup.optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        setup.scheduler.step()
    return loss.detach() if admitted else torch.zeros_like(loss.detach())


def train_steps(setup: TrainingSetup, batches: Iterable[dict[str, torch.Tensor]], accelerator: Accelerator,
                cfg: Config, criterion: Loss, guard: NonFiniteGuard | None,
                after_step: Callable[[torch.Tensor], bool]) -> torch.Tensor:
    """Each batch through train_step; after every optimizer step, after_step(loss sum so far) runs (the trainer's
    bookkeeping, or a clock) and ends the loop by returning True. Returns the sum of the detached micro-batch
    losses, still on the device: reading it is the caller's one host sync."""
    loss_sum = torch.zeros((), device=accelerator.device)
    for batch in batches:
        loss_sum += train_step(setup, batch, accelerator, cfg, criterion, guard)
        if accelerator.sync_gradients and after_step(loss_sum):
            break
    return loss_sum
