"""Pure arithmetic of the run-time projection: how many steps, validations and tests a run makes, and what they
add up to. No timing and no torch here, so the tests check every formula without running a model.

Semantics projected (the cadence flags of engine/config.py):
  * a training epoch is the builders' `steps_per_epoch` optimizer steps of --grad_accum micro-batches each;
  * epoch e (1-based) ends with a validation when e % --val_every == 0 or e is the last epoch;
  * --val_every_steps N adds a validation after every optimizer step whose global number is a multiple of N,
    except an epoch's last step (the epoch end decides that one);
  * --test_every N > 0 scores the test set after every N-th epoch; the final test (best checkpoint) always runs;
  * early stopping counts every validation and is checked at epoch ends: the earliest stop is the first epoch
    end by which --patience + 1 validations have run (the first the best, none after it better).
The epoch rules are engine/train/schedules.py's own functions, the ones the trainer calls.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from timellm_launcher.engine.train.schedules import score_test_after_epoch, validate_after_epoch


def batches_per_process(samples: int, batch_size: int, processes: int, drop_last: bool) -> int:
    """Batches one process sees in one pass, as Accelerate shards a loader (even_batches, batch-level sharding)."""
    if samples < 0 or batch_size < 1 or processes < 1:
        raise ValueError("samples >= 0, batch_size >= 1 and processes >= 1 are required")
    batches = samples // batch_size if drop_last else math.ceil(samples / batch_size)
    if batches % processes == 0:
        return batches // processes
    # an uneven remainder: dropped with drop_last, else padded so that every process gets one more batch
    return batches // processes + (0 if drop_last else 1)


@dataclass(frozen=True)
class Cadence:
    """The flags that decide how often a run validates, tests and may stop."""

    train_epochs: int
    val_every: int = 1
    val_every_steps: int = 0
    test_every: int = 0
    patience: int = 3


def validations_in_epoch(epoch: int, cadence: Cadence, steps_per_epoch: int) -> int:
    inside = 0
    if cadence.val_every_steps:  # multiples of N among global steps (e-1)*S+1 .. e*S-1
        n, last_inside = cadence.val_every_steps, epoch * steps_per_epoch - 1
        inside = last_inside // n - ((epoch - 1) * steps_per_epoch) // n
    return inside + int(validate_after_epoch(cadence, epoch))


def periodic_tests_in_epoch(epoch: int, cadence: Cadence) -> int:
    """Periodic test passes during training (the final test is counted separately)."""
    return int(score_test_after_epoch(cadence, epoch))


def earliest_stop_epoch(cadence: Cadence, steps_per_epoch: int) -> int:
    """Epoch after which early stopping can end the run at the earliest: the first validation is the best one and
    the next --patience validations do not improve on it."""
    done = 0
    for epoch in range(1, cadence.train_epochs + 1):
        done += validations_in_epoch(epoch, cadence, steps_per_epoch)
        if done > cadence.patience:
            return epoch
    return cadence.train_epochs


@dataclass(frozen=True)
class Costs:
    """Measured seconds the projection multiplies out."""

    step_s: float  # one optimizer step in steady state
    first_epoch_extra_s: float  # warm-up cost above steady state, paid once per repetition
    val_pass_s: float  # one full validation pass
    test_pass_s: float  # one full test pass
    state_save_s: float = 0.0  # the resumable state, saved at every epoch end
    weights_save_s: float = 0.0  # best.safetensors, saved when a validation improves
    setup_s: float = 0.0  # building data, model and optimizer (once per repetition)


@dataclass
class EpochProjection:
    epoch: int
    train_s: float
    validations: int
    val_s: float
    tests: int
    test_s: float
    checkpoint_s: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.val_s + self.test_s + self.checkpoint_s


@dataclass
class RunProjection:
    """One repetition (one --itr index) that runs `epochs` epochs, then the final test."""

    epochs: list[EpochProjection] = field(default_factory=list)
    setup_s: float = 0.0
    final_test_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.setup_s + sum(e.total_s for e in self.epochs) + self.final_test_s

    @property
    def epochs_s(self) -> float:
        return sum(e.total_s for e in self.epochs)

    def to_dict(self) -> dict:
        return {"epochs": len(self.epochs), "setup_s": self.setup_s, "epochs_s": self.epochs_s,
                "final_test_s": self.final_test_s, "total_s": self.total_s,
                "per_epoch": [{**asdict(e), "total_s": e.total_s} for e in self.epochs]}


def project_run(costs: Costs, cadence: Cadence, steps_per_epoch: int, epochs: int | None = None,
                improving_validations: int | None = None) -> RunProjection:
    """Seconds of one repetition that trains `epochs` epochs (default: all of --train_epochs).

    improving_validations caps how many validations save best.safetensors (None: every one does, the upper bound)."""
    epochs = cadence.train_epochs if epochs is None else epochs
    run = RunProjection(setup_s=costs.setup_s, final_test_s=costs.test_pass_s)
    saves_left = math.inf if improving_validations is None else improving_validations
    for epoch in range(1, epochs + 1):
        validations = validations_in_epoch(epoch, cadence, steps_per_epoch)
        tests = periodic_tests_in_epoch(epoch, cadence)
        weight_saves = min(validations, saves_left)
        saves_left -= weight_saves
        run.epochs.append(EpochProjection(
            epoch=epoch,
            train_s=steps_per_epoch * costs.step_s + (costs.first_epoch_extra_s if epoch == 1 else 0.0),
            validations=validations, val_s=validations * costs.val_pass_s,
            tests=tests, test_s=tests * costs.test_pass_s,
            checkpoint_s=costs.state_save_s + weight_saves * costs.weights_save_s))
    return run


@dataclass
class Projection:
    steps_per_epoch: int
    train_epoch_s: float  # steady state, training only (what results.json's timing.train_epoch_s measures)
    first_train_epoch_s: float  # epoch 1 with its warm-up
    epoch_s: float  # mean epoch of the full run: training, validations, periodic tests, checkpoints
    full: RunProjection  # one repetition, every epoch
    early_stop: RunProjection  # one repetition stopped at the earliest early-stopping point
    itr: int

    @property
    def epochs_per_hour(self) -> float:
        return 3600.0 / self.epoch_s if self.epoch_s > 0 else math.inf

    def to_dict(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, "train_epoch_s": self.train_epoch_s,
                "first_train_epoch_s": self.first_train_epoch_s, "epoch_s": self.epoch_s,
                "epochs_per_hour": self.epochs_per_hour, "itr": self.itr,
                "run": self.full.to_dict(), "total_s": self.full.total_s * self.itr,
                "early_stop_best_case": {**self.early_stop.to_dict(),
                                         "total_s": self.early_stop.total_s * self.itr}}


def project(costs: Costs, cadence: Cadence, steps_per_epoch: int, itr: int = 1) -> Projection:
    """The whole projection: one epoch, one repetition, --itr repetitions, and the early-stopping best case."""
    full = project_run(costs, cadence, steps_per_epoch)
    early = project_run(costs, cadence, steps_per_epoch, epochs=earliest_stop_epoch(cadence, steps_per_epoch),
                        improving_validations=1)
    train_epoch_s = steps_per_epoch * costs.step_s
    return Projection(steps_per_epoch=steps_per_epoch, train_epoch_s=train_epoch_s,
                      first_train_epoch_s=train_epoch_s + costs.first_epoch_extra_s,
                      epoch_s=full.epochs_s / len(full.epochs), full=full, early_stop=early, itr=itr)
