"""The estimator: build exactly what training builds, time real steps and evaluation batches, project the run.

What is timed is what the trainer's epoch timer measures: the trainer's own loop (engine.train.loop.train_steps)
over the prepared training loader, fetching the batch included, with its real optimizer and accumulation; the
first --warmup_batches optimizer steps are kept out of the steady-state figures and their excess is charged to
epoch 1. Validation is timed through engine.evaluate.loop.evaluate itself. The estimator's model, optimizer and
loaders are its own copies: nothing of a run is read back or written (the checkpoint cost is measured in a
temporary folder that is removed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, set_seed

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config, config_from_args
from timellm_launcher.engine.estimate.compare import run_compare
from timellm_launcher.engine.estimate.flops import peak_tflops, training_flops
from timellm_launcher.engine.estimate.memory_plan import plan_command
from timellm_launcher.engine.estimate.projection import Cadence, Costs, batches_per_process, project
from timellm_launcher.engine.estimate.report import check_output_path, format_report, write_report
from timellm_launcher.engine.evaluate.loop import evaluate
from timellm_launcher.engine.model_io import save_weights
from timellm_launcher.engine.report.memory import peak_memory_mb
from timellm_launcher.engine.runtime import device_name
from timellm_launcher.engine.train.accelerator import build_accelerator, deepspeed_stage
from timellm_launcher.engine.train.builders import TrainingSetup, build_training
from timellm_launcher.engine.train.checkpoint import save_training_state
from timellm_launcher.engine.train.loop import train_steps
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard

SCHEMA = "time-llm-estimate/1"


# ---------------------------------------------------------------------------------------------- clocks
class StepClock:
    """Timestamps on the device's own timeline (perf_counter on CPUs, CUDA events on GPUs): a GPU's host runs
    ahead of the kernels it queues, and an event completes when the GPU reaches it, so differences between events
    are what the GPU spent, idle gaps included, without synchronising every step. mark() a point; read seconds
    between marks with elapsed() after finish()."""

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


# ---------------------------------------------------------------------------------------------- training
@dataclass
class TrainTiming:
    step_s: list[float]  # measured optimizer steps (wall on the device timeline, fetch included)
    data_wait_s: list[float]  # of which waiting for the loader
    warmup_s: list[float]  # the warm-up steps, excluded from the statistics

    @property
    def mean_step_s(self) -> float:
        return sum(self.step_s) / len(self.step_s)

    @property
    def warmup_extra_s(self) -> float:
        """What the warm-up cost above steady state, paid once by the first epoch: each warm-up step's excess over
        the slowest timed step. Against the mean, a shared machine's slower spell during the warm-up would be
        charged as warm-up too."""
        slowest = max(self.step_s)
        return sum(max(0.0, s - slowest) for s in self.warmup_s)


def time_training(setup: TrainingSetup, accelerator: Accelerator, cfg: Config, warmup: int,
                  measure: int, measure_seconds: float = 0.0, max_steps: int = 1000) -> TrainTiming:
    """The trainer's own loop (engine.train.loop.train_steps) with a clock: a mark at every optimizer step and
    around every batch fetch. At least `measure` steps are timed, more (up to `max_steps`) until `measure_seconds`
    have passed."""
    clock = StepClock(accelerator.device)
    guard = NonFiniteGuard(cfg, accelerator, setup.trainable)  # the trainer's guard: its one sync per step counts
    setup.model.train()
    step_marks = [clock.mark()]  # the trainer's epoch timer starts before the loader's iterator is made
    waits: list[list[tuple[object, object]]] = [[]]
    measured_from: list[float] = []

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        """The training loader epoch after epoch (a short training set starts its next epoch, as the trainer
        would), with the time spent waiting for each batch marked."""
        loader, epoch = setup.loaders["train"], 0
        while True:
            loader.set_epoch(epoch)
            fetched = iter(loader)
            while True:
                before = clock.mark()
                batch = next(fetched, None)
                if batch is None:
                    break
                waits[-1].append((before, clock.mark()))
                yield batch
            epoch += 1

    loss_sum = torch.zeros((), device=accelerator.device)
    for step in train_steps(setup, batches(), guard, loss_sum):
        step_marks.append(clock.mark())
        waits.append([])
        timed = step - warmup
        if timed == 0:
            measured_from.append(time.perf_counter())
        if timed >= measure and (timed >= max_steps or time.perf_counter() - measured_from[0] >= measure_seconds):
            break
    loss_sum.item()  # the trainer reads the epoch's loss at its end
    clock.finish()
    steps = [clock.elapsed(a, b) for a, b in zip(step_marks[:-1], step_marks[1:], strict=True)]
    data_wait = [sum(clock.elapsed(a, b) for a, b in pairs) for pairs in waits[:-1]]
    return TrainTiming(step_s=steps[warmup:], data_wait_s=data_wait[warmup:], warmup_s=steps[:warmup])


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalTiming:
    """One timed pass of engine.evaluate.loop.evaluate over the first batches of the validation loader."""

    pass_s: float  # the timed pass, set-up and final metrics included
    batch_s: list[float]  # per batch; the first also pays model.eval() and the prototypes' recomputation
    batch_samples: list[int]  # samples in each timed batch

    @property
    def steady_sample_s(self) -> float:
        """Seconds per sample of the batches after the first (of the only one, when one was timed)."""
        later = slice(1, None) if len(self.batch_s) > 1 else slice(None)
        return sum(self.batch_s[later]) / sum(self.batch_samples[later])

    def pass_seconds(self, samples: int) -> float:
        """A full pass over `samples` samples (per process): the timed pass plus the rest at the steady rate."""
        return self.pass_s + (samples - sum(self.batch_samples)) * self.steady_sample_s


class _FirstBatches:
    """The first `count` batches of a loader, marking the clock after each one has been consumed."""

    def __init__(self, loader, count: int, clock: StepClock, marks: list, sizes: list) -> None:
        self.loader, self.count, self.clock, self.marks, self.sizes = loader, count, clock, marks, sizes

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        for _ in range(self.count):
            batch = next(batches)
            self.sizes.append(int(batch["y"].shape[0]))
            yield batch
            self.marks.append(self.clock.mark())


def time_evaluation(setup: TrainingSetup, accelerator: Accelerator, count: int) -> EvalTiming:
    """A 1-batch warm-up pass, then a timed pass, each entered from train mode as the trainer enters it."""
    loader = setup.loaders["val"]
    count = min(count, len(loader))
    clock = StepClock(accelerator.device)
    setup.model.train()
    evaluate(setup.model, _FirstBatches(loader, 1, clock, [], []), accelerator, "warm-up")
    setup.model.train()  # the trainer validates right after training: prototypes are recomputed
    clock.finish()
    marks, sizes = [clock.mark()], []
    evaluate(setup.model, _FirstBatches(loader, count, clock, marks, sizes), accelerator, "timing")
    end = clock.mark()
    clock.finish()
    batch_s = [clock.elapsed(a, b) for a, b in zip(marks[:-1], marks[1:], strict=True)]
    setup.model.train()
    return EvalTiming(pass_s=clock.elapsed(marks[0], end), batch_s=batch_s, batch_samples=sizes)


def eval_samples_per_process(samples: int, batch_size: int, processes: int) -> int:
    """Samples one process evaluates in a pass (several processes pad the last round to full batches)."""
    if processes == 1:
        return samples
    return batches_per_process(samples, batch_size, processes, drop_last=False) * batch_size


# ---------------------------------------------------------------------------------------------- checkpoints
def time_checkpoint(setup: TrainingSetup, accelerator: Accelerator, cfg: Config) -> tuple[float, float] | None:
    """(resumable state, best weights) save seconds, written into a temporary folder that is then removed.

    None across several nodes, where no temporary folder is shared."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if int(os.environ.get("LOCAL_WORLD_SIZE", str(world))) != world:
        return None
    holder = [tempfile.mkdtemp(prefix="estimate-checkpoint-") if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(holder)
    folder = Path(holder[0])
    try:
        t0 = time.perf_counter()
        save_training_state(accelerator, setup.model, setup.raw_model, setup.optimizer,
                            {"progress": {}, "scheduler": setup.scheduler.state_dict(), "config": cfg.to_dict()},
                            folder)
        state_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if accelerator.is_main_process:
            save_weights(setup.raw_model, folder / "best.safetensors", {"epoch": 0})
        weights_s = time.perf_counter() - t0
    finally:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
    return state_s, weights_s


# ---------------------------------------------------------------------------------------------- statistics
def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return {"mean": sum(values) / len(values), "median": statistics.median(values), "p90": p90,
            "min": ordered[0], "max": ordered[-1], "n": len(values)}


def peak_memory(device: torch.device) -> dict[str, float]:
    memory = peak_memory_mb(device)
    if device.type == "cuda":
        memory["gpu_max_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
        memory["gpu_total_mb"] = torch.cuda.get_device_properties(device).total_memory / 2**20
    return memory


# ---------------------------------------------------------------------------------------------- the estimate
def run_estimate(cfg: Config, opts: argparse.Namespace) -> dict[str, Any]:
    """Build, time and project; returns the report (the JSON written with --output)."""
    started = time.perf_counter()
    set_seed(cfg.seed)
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    setup_s = time.perf_counter() - started
    # the schedule's values do not change a step's cost; a constant one cannot step past its end (TST would)
    setup.scheduler = torch.optim.lr_scheduler.LambdaLR(setup.optimizer, lambda _: 1.0)
    processes = accelerator.num_processes

    train = time_training(setup, accelerator, cfg, opts.warmup_batches, opts.measure_batches, opts.measure_seconds)
    evaluation = time_evaluation(setup, accelerator, opts.eval_batches)
    saves = time_checkpoint(setup, accelerator, cfg)
    memory = peak_memory(accelerator.device)  # before the FLOP count, which runs outside the trainer's path

    data = setup.data
    samples = {split: len(ds) for split, ds in data.datasets.items()}
    steps = setup.steps_per_epoch  # the builders' count: what training runs
    eval_batches = {s: batches_per_process(samples[s], cfg.eval_batch_size, processes, drop_last=False)
                    for s in ("val", "test")}
    costs = Costs(
        step_s=train.mean_step_s, first_epoch_extra_s=train.warmup_extra_s,
        val_pass_s=evaluation.pass_seconds(eval_samples_per_process(samples["val"], cfg.eval_batch_size, processes)),
        test_pass_s=evaluation.pass_seconds(eval_samples_per_process(samples["test"], cfg.eval_batch_size,
                                                                     processes)),
        state_save_s=saves[0] if saves else 0.0, weights_save_s=saves[1] if saves else 0.0, setup_s=setup_s)
    cadence = Cadence(train_epochs=cfg.train_epochs, val_every=cfg.val_every, val_every_steps=cfg.val_every_steps,
                      test_every=cfg.test_every, patience=cfg.patience)
    projection = project(costs, cadence, steps, cfg.itr)

    raw = setup.raw_model
    flops_per_step = count_step_flops(raw, accelerator, cfg, data.n_vars)
    step_s = train.mean_step_s
    samples_per_step = cfg.batch_size * cfg.grad_accum * processes
    tokens_per_sample = raw.sequence_length * data.n_vars
    achieved = flops_per_step / step_s / 1e12 if flops_per_step else None
    peak = opts.peak_tflops or peak_tflops(accelerator.device, accelerator.mixed_precision)
    device = accelerator.device
    return {
        "schema": SCHEMA,
        "status": "ok",
        "device": {"type": device.type, "name": device_name(device), "num_processes": processes,
                   "mixed_precision": accelerator.mixed_precision, "deepspeed_stage": deepspeed_stage(accelerator),
                   "cpu_threads": torch.get_num_threads(), "torch": torch.__version__},
        "config": cfg.to_dict(),
        "estimator": {"warmup_batches": opts.warmup_batches, "measure_batches": opts.measure_batches,
                      "measure_seconds": opts.measure_seconds,
                      "eval_batches": len(evaluation.batch_s)},
        "model": {"backbone": cfg.llm_model, "llm_layers": cfg.llm_layers, "llm_dim": raw.llm.config.hidden_size,
                  "prompt_tokens": raw.prompt.length, "patch_tokens": raw.num_patches,
                  "tokens_per_sample": tokens_per_sample, "params_total": setup.n_total,
                  "params_trainable": setup.n_trainable, "flops_per_step": flops_per_step},
        "data": {"path": str(data.path), "n_vars": data.n_vars, "samples": samples,
                 "batches_per_process": {"train": len(setup.loaders["train"]), **eval_batches},
                 "micro_batches_per_step": cfg.grad_accum, "samples_per_step": samples_per_step,
                 "steps_per_epoch": steps},
        "measured": {
            "setup_s": setup_s,
            "step_s": summary(train.step_s),
            "warmup_step_s": train.warmup_s,
            "warmup_extra_s": train.warmup_extra_s,
            "data_wait_s": statistics.mean(train.data_wait_s),
            "compute_s": step_s - statistics.mean(train.data_wait_s),
            "samples_per_s": samples_per_step / step_s,
            "tokens_per_s": samples_per_step * tokens_per_sample / step_s,
            "tflops_per_s": achieved,
            "peak_tflops": peak,
            "mfu": achieved / peak if peak and achieved else None,
            "eval": {"timed_pass_s": evaluation.pass_s, "batch_s": evaluation.batch_s,
                     "batch_samples": evaluation.batch_samples, "steady_sample_s": evaluation.steady_sample_s},
            "checkpoint_s": {"state": costs.state_save_s, "weights": costs.weights_save_s} if saves else None,
            "peak_memory_mb": memory,
        },
        "projection": {**projection.to_dict(), "val_pass_s": costs.val_pass_s, "test_pass_s": costs.test_pass_s},
        "wall_s": time.perf_counter() - started,
    }


def count_step_flops(raw: torch.nn.Module, accelerator: Accelerator, cfg: Config, n_vars: int) -> int | None:
    """FLOPs of one optimizer step on one process, under the run's autocast; None (with a note) when the counter
    cannot follow the model (e.g. through compiled regions): the timings stand without it."""
    x = torch.randn(cfg.batch_size, cfg.seq_len, n_vars, device=accelerator.device)
    try:
        with accelerator.autocast():
            return training_flops(raw, x) * cfg.grad_accum
    except Exception as err:  # an optional figure must not cost the user the estimate
        accelerator.print(f"note: FLOPs not counted ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
        return None


# ---------------------------------------------------------------------------------------------- the command
def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def check_estimator_flags(opts: argparse.Namespace) -> None:
    if opts.warmup_batches < 0:
        raise UserError(f"--warmup_batches must be >= 0, got {opts.warmup_batches}")
    for name in ("measure_batches", "eval_batches"):
        if getattr(opts, name) < 1:
            raise UserError(f"--{name} must be a positive integer, got {getattr(opts, name)}")
    if not opts.measure_seconds >= 0:
        raise UserError(f"--measure_seconds must be >= 0, got {opts.measure_seconds}")
    if not opts.peak_tflops >= 0:
        raise UserError(f"--peak_tflops must be >= 0, got {opts.peak_tflops}")
    check_output_path(opts.output)


def estimate_command(opts: argparse.Namespace, argv: list[str]) -> None:
    """estimate_training_time.py: one estimate (table + optional JSON), or --compare over several."""
    check_estimator_flags(opts)
    cfg = config_from_args(opts)  # the same validation, and the same messages, as run_main.py
    if opts.plan:
        if opts.compare:
            raise UserError("--plan and --compare are separate commands; give one of them")
        plan_command(cfg, opts)
        return
    if opts.compare:
        run_compare(opts.compare, argv, opts.output)
        return
    try:
        report = run_estimate(cfg, opts)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if opts.output and os.environ.get("RANK", "0") == "0":
            write_report(opts.output, {"schema": SCHEMA, "status": "does_not_fit", "error": message,
                                     "config": cfg.to_dict()})
        raise UserError(f"does not fit: {message} (lower --batch_size, or try --use_amp or "
                        "--gradient_checkpointing)") from None
    if PartialState().is_main_process:
        print(format_report(report))
        if opts.output:
            print(f"estimate: {write_report(opts.output, report)}")
