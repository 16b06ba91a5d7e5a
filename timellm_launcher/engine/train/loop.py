"""The training loop's body: the one the trainer runs and the estimator and the step benchmark time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from timellm_launcher.engine.evaluate.loop import forecast
from timellm_launcher.engine.train.builders import TrainingSetup
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard


def train_step(setup: TrainingSetup, batch: dict[str, torch.Tensor],
               guard: NonFiniteGuard | None = None) -> torch.Tensor:
    """One micro-batch; the optimizer steps when the accumulation window closes. Returns the detached loss
    (no host sync without a guard; the guard syncs once to check it)."""
    accelerator = setup.accelerator
    with accelerator.accumulate(setup.model):
        loss = setup.criterion(forecast(setup.model, batch), batch)
        admitted = guard is None or guard.admit(loss)
        if admitted or guard.lockstep_backward:
            accelerator.backward(loss if admitted else guard.zero_loss())
        if accelerator.sync_gradients and guard is not None and guard.window_is_bad():
            setup.optimizer.zero_grad(set_to_none=True)  # skipped: the weights stay the last good ones
        else:
            if accelerator.sync_gradients and setup.max_grad_norm > 0 and accelerator.state.deepspeed_plugin is None:
                accelerator.clip_grad_norm_(setup.trainable, setup.max_grad_norm)  # DeepSpeed clips inside its step
            setup.optimizer.step()
            setup.optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        setup.scheduler.step()
    return loss.detach() if admitted else torch.zeros_like(loss.detach())


def train_steps(setup: TrainingSetup, batches: Iterable[dict[str, torch.Tensor]], guard: NonFiniteGuard | None,
                loss_sum: torch.Tensor) -> Iterator[int]:
    """Each batch through train_step, its detached loss added to `loss_sum` (on the device: reading it is the
    caller's host sync); yields the number of optimizer steps taken so far after each one."""
    steps = 0
    for batch in batches:
        loss_sum += train_step(setup, batch, guard)
        if setup.accelerator.sync_gradients:
            steps += 1
            yield steps
