"""The non-finite loss guard: a NaN/inf loss never reaches the weights, and too many stop the run.

Each micro-batch's loss is checked before backward (one host sync per micro-batch; across processes
the verdict is all-reduced so every rank skips together and no collective is left waiting). A bad
micro-batch gets no backward, and the optimizer step of its accumulation window is skipped with the
gradients zeroed, so the weights stay those of the last good step. Under DeepSpeed the engine steps
inside backward: with --grad_accum 1 skipping the backward skips the step; with accumulation the bad
micro-batch backpropagates a zero loss instead (the engine's micro-steps stay in lockstep) and the
window steps on its good micro-batches. Gradient overflow under fp16 (finite loss, inf gradients) is
left to the loss scaler, which already skips those steps and lowers its scale.
After --max_bad_steps skipped steps the run stops without saving anything more: the checkpoints on
disk are the last good ones.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config


class TrainingDiverged(UserError):
    """Too many non-finite losses: one line, exit code 2 (a UserError), checkpoints kept as they were."""


def likely_cause(cfg: Config, precision: str) -> str:
    if precision == "fp16":
        return ("fp16 overflow: train in bf16 (--mixed_precision bf16) where the device has it, or lower "
                f"--learning_rate ({cfg.learning_rate:g})")
    return (f"divergence: lower --learning_rate ({cfg.learning_rate:g})"
            f"{' or clip gradients with --max_grad_norm 1.0' if cfg.max_grad_norm == 0 else ''}")


class NonFiniteGuard:
    """admit(loss) before backward; window_is_bad() when the accumulation window closes; report(step) after."""

    def __init__(self, cfg: Config, accelerator: Accelerator, trainable: list[torch.nn.Parameter]) -> None:
        self.cfg, self.accelerator, self.trainable = cfg, accelerator, trainable
        self.bad_steps = 0
        self.last_bad_loss: float | None = None
        self._window_bad = False
        self._skipped = False
        deepspeed = accelerator.state.deepspeed_plugin is not None
        self.lockstep_backward = deepspeed and cfg.grad_accum > 1

    def admit(self, loss: torch.Tensor) -> bool:
        """True when every process's loss is finite (backward may run)."""
        finite = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.reduce(finite, "sum") / self.accelerator.num_processes
        if bool(finite.item() == 1.0):
            return True
        self._window_bad = True
        self.last_bad_loss = float(loss.detach().float().reshape(-1)[0])
        return False

    def zero_loss(self) -> torch.Tensor:
        """A finite loss with zero gradients, for engines that must see a backward every micro-batch."""
        return sum((p * 0).sum() for p in self.trainable)

    def window_is_bad(self) -> bool:
        """At a window's close: True when its optimizer step must be skipped (and resets the window)."""
        bad, self._window_bad = self._window_bad, False
        self._skipped = bad
        if bad:
            self.bad_steps += 1
        return bad

    def report(self, step: int, epoch: int, best_path: str) -> None:
        """After an optimizer step: say so when it was skipped; stop the run after --max_bad_steps of them."""
        if not self._skipped:
            return
        self._skipped = False
        cause = likely_cause(self.cfg, self.accelerator.mixed_precision)
        self.accelerator.print(f"step {step} (epoch {epoch}): non-finite loss {self.last_bad_loss}; step skipped "
                               f"({self.bad_steps}/{self.cfg.max_bad_steps}); likely cause: {cause}")
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingDiverged(f"training diverged: stopped after {self.bad_steps} non-finite losses "
                                   f"(--max_bad_steps {self.cfg.max_bad_steps}) at epoch {epoch} step {step}; "
                                   f"likely cause: {cause}; checkpoints left as they were (best: {best_path})")
