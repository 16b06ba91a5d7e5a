"""One experiment: epochs of the training loop (engine/train/loop.py) with validation, early stopping,
checkpoints and signals, then the test set scored once with the best checkpoint.

One Accelerator; Adam on the trainable parameters only; gradient accumulation through
`accelerator.accumulate`; the best validation's weights are saved (trainable parameters only) and reloaded to
score the test set, which keeps every sample. The resumable state is saved every epoch (and every
--save_every_steps), and on SIGTERM/SIGINT before exiting.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import fingerprint
from timellm_launcher.data_provider.device_batches import DeviceWindowLoader
from timellm_launcher.engine.config import RUN_ONLY, Config
from timellm_launcher.engine.evaluate.baselines import baseline_lines, m4_baseline, score_baselines
from timellm_launcher.engine.evaluate.intervals import CoverageCounter, ResidualSample, coverage_line
from timellm_launcher.engine.evaluate.loop import evaluate
from timellm_launcher.engine.evaluate.metrics import SeriesScores
from timellm_launcher.engine.evaluate.short_term import evaluate_short_term
from timellm_launcher.engine.progress import progress
from timellm_launcher.engine.report.memory import MemoryMeter, peak_memory_mb
from timellm_launcher.engine.report.plots import PLOT_NAME, plot_run
from timellm_launcher.engine.report.results import RESULTS_FILE, record_in_table, write_results
from timellm_launcher.engine.report.tracking import build_tracker, epoch_values, final_values
from timellm_launcher.engine.train.accelerator import (
    build_accelerator,
    deepspeed_stage,
    precision_choice,
    uses_deepspeed,
)
from timellm_launcher.engine.train.builders import build_training, prompt_description
from timellm_launcher.engine.train.cadence import score_test_after_epoch, validate_after_epoch, validate_after_step
from timellm_launcher.engine.train.checkpoint import (
    DamagedCheckpoint,
    find_states,
    load_training_state,
    load_weights,
    read_progress,
    save_training_state,
    save_weights,
    set_rng_state,
    weights_run_id,
)
from timellm_launcher.engine.train.loop import train_steps
from timellm_launcher.engine.train.losses import build_loss
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard
from timellm_launcher.engine.train.run_folders import BEST, RunFolders, choose, make_folder
from timellm_launcher.engine.train.schedules import PER_STEP, observe_validation


class Interrupted(Exception):
    """A signal asked the run to stop: during training its state was saved first; during the test (where="test")
    the trained checkpoint is complete and only the scoring is lost."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(where)
        self.signum, self.where = signum, where


@dataclass
class EpochRecord:
    epoch: int
    lr: float  # at the epoch's first step
    lr_end: float  # at its last step (differs for the per-step TST schedule)
    train_loss: float
    val_mse: float | None  # None: not validated at this epoch's end (--val_every)
    val_mae: float | None
    seconds: float
    steps: int
    samples_per_s: float
    step_s: float  # mean seconds per optimizer step
    is_best: bool = False
    test_mse: float | None = None  # with --test_every
    test_mae: float | None = None


@dataclass
class Progress:
    """Where a run is; saved with the resumable state."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps done in the unfinished epoch
    global_step: int = 0
    loss_sum: float = 0.0  # of the unfinished epoch
    seconds: float = 0.0  # of the unfinished epoch
    best_score: float = math.inf  # the best validation's selection_metric (MSE; sMAPE on M4)
    best_val_mae: float = math.inf
    best_epoch: int = 0  # the (1-based) epoch the best validation happened in, possibly mid-epoch
    best_step: int = 0  # global optimizer step of the best validation
    bad_validations: int = 0  # validations since the last improvement (early stopping counts these)
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)  # every validation, mid-epoch ones too
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # stamped into best.safetensors and results.json


def selection_metric(cfg: Config) -> str:
    """The validation score early stopping and the best checkpoint follow: sMAPE on M4 (raw scales differ by
    orders of magnitude between series), MSE otherwise."""
    return "smape" if cfg.task_name == "short_term_forecast" else "mse"


class Trainer:
    """One repetition (`--itr` index) of an experiment: fit, then test."""

    def __init__(self, cfg: Config, accelerator: Accelerator, index: int) -> None:
        self.cfg, self.accelerator, self.index = cfg, accelerator, index
        self.seed = cfg.seed + index
        self.say = accelerator.print
        set_seed(self.seed)
        started = time.perf_counter()
        self.setup = build_training(cfg, accelerator)  # data and model validated before any folder is made
        self.setup_seconds = time.perf_counter() - started
        self.loaded_mb = MemoryMeter(accelerator.device).peak_mb()  # data, backbone, optimizer: before any step
        self.folders = self._choose_folders(f"{cfg.setting}_{index}")
        self.run_name, self.ckpt_dir = self.folders.name, self.folders.checkpoints
        self.best_path = self.ckpt_dir / BEST
        if self.folders.note:
            self.say(self.folders.note)
        self.progress = Progress()
        self.guard = NonFiniteGuard(cfg, accelerator, self.setup.trainable)
        self.criterion = build_loss(cfg.loss, self.setup.data.seasonality)
        self.tracker = build_tracker(cfg, self.run_name) if accelerator.is_main_process else None
        self.precision_reason = precision_choice(cfg)[1]
        self.stop_signal: int | None = None
        self.pending_rng: dict | None = None
        self.calibration: dict | None = None  # the intervals (--levels), set before the test

    # ------------------------------------------------------------------ state
    def _choose_folders(self, base: str) -> RunFolders:
        """The main process picks (and claims) this run's version folders; every rank gets its choice."""
        cfg = self.cfg
        choice: RunFolders | str | None = None
        if self.accelerator.is_main_process:
            try:
                choice = choose(Path(cfg.output_dir), Path(cfg.checkpoints), base, is_training=bool(cfg.is_training),
                                resume=cfg.resume, has_state=lambda folder: bool(find_states(folder)))
                make_folder("--output_dir", choice.results)
                make_folder("--checkpoints", choice.checkpoints)
            except UserError as err:
                choice = str(err)
        if self.accelerator.num_processes > 1:
            choice = broadcast_object_list([choice])[0]
        if isinstance(choice, str):
            raise UserError(choice)
        return choice

    def save_state(self) -> None:
        setup = self.setup
        save_training_state(self.accelerator, setup.model, setup.raw_model, setup.optimizer,
                            {"progress": asdict(self.progress), "scheduler": setup.scheduler.state_dict(),
                             "config": self.cfg.to_dict(), "data_fingerprint": self.data_fingerprint},
                            self.ckpt_dir)

    @cached_property
    def data_fingerprint(self) -> str:
        return fingerprint(self.setup.data)

    def resume(self) -> None:
        states = find_states(self.ckpt_dir) if self.cfg.resume == "auto" else [Path(self.cfg.resume)]
        if not states:
            return  # run_folders already said that this run starts from scratch
        setup = self.setup
        for i, folder in enumerate(states):
            try:
                saved = read_progress(folder)
                self._check_resumable(folder, saved)
                rng = load_training_state(self.accelerator, setup.model, setup.raw_model, setup.optimizer, folder)
                break
            except DamagedCheckpoint as err:
                if i + 1 == len(states):
                    raise UserError(f"--resume: {err}; no intact state is left to resume from (train again without "
                                    f"--resume; {self.best_path.name} is kept)") from None
                self.say(f"--resume: {err}; resuming from the state saved before it, {states[i + 1]}")
                if self.accelerator.is_main_process:  # the next save must rotate the intact state, not this one
                    shutil.rmtree(folder, ignore_errors=True)
        setup.scheduler.load_state_dict(saved["scheduler"])
        self.progress = Progress(**saved["progress"])
        self.pending_rng = rng
        done = self.progress
        self.say(f"resumed from {folder}: {done.epoch} epoch(s) and {done.step_in_epoch} step(s) done, "
                 f"best validation {selection_metric(self.cfg)} {done.best_score:.4f}")

    def _check_resumable(self, folder: Path, saved: dict) -> None:
        """The state must come from these flags and this data; checked before any weight is loaded."""
        changed = [k for k, v in saved["config"].items() if k not in RUN_ONLY and getattr(self.cfg, k, v) != v]
        if changed:
            raise UserError(f"--resume {folder}: it was written with other values of "
                            f"{', '.join('--' + k for k in changed)}; resume with the flags it was trained with")
        if saved.get("data_fingerprint", self.data_fingerprint) != self.data_fingerprint:
            raise UserError(f"--resume {folder}: it was trained on other data than {self.setup.data.path} holds now; "
                            "resume with the data it was trained on")

    def _restore_rng_at(self, point: str) -> None:
        """RNG is restored where it was saved: before the epoch's loader starts (epoch boundary) or just after
        the first batch of the resumed epoch was fetched (mid-epoch), so dropout masks match an unbroken run."""
        mid_epoch = self.progress.step_in_epoch > 0
        if self.pending_rng is not None and (point == "mid" if mid_epoch else point == "start"):
            set_rng_state(self.pending_rng)
            self.pending_rng = None

    # ------------------------------------------------------------------ loop
    def _on_signal(self, signum: int, _frame) -> None:
        if self.stop_signal is not None:  # a second signal: stop at once
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        self.stop_signal = signum

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training loader (the rest of it, after a mid-epoch resume)."""
        self.setup.model.train()
        self.bar = progress(total=self.setup.steps_per_epoch, initial=self.progress.step_in_epoch,
                            desc=f"epoch {epoch + 1}/{self.cfg.train_epochs}",
                            show=self.accelerator.is_local_main_process)
        self.epoch_clock = time.perf_counter()
        loss_sum = train_steps(self.setup, self._epoch_batches(epoch), self.accelerator, self.cfg, self.criterion,
                               self.guard, lambda losses: self._after_step(epoch, losses))
        self.bar.close()
        self._bank(loss_sum)

    def _epoch_batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches: the loader reshuffled for the epoch, the batches a resumed run already trained on
        skipped, and the saved RNG restored where it was saved (see _restore_rng_at)."""
        loader = self.setup.loaders["train"]
        loader.set_epoch(epoch)
        skip = self.progress.step_in_epoch * self.cfg.grad_accum
        if skip:
            loader = loader.skip_first(skip) if isinstance(loader, DeviceWindowLoader) else \
                self.accelerator.skip_first_batches(loader, skip)
        self._restore_rng_at("start")
        for index, batch in enumerate(loader):
            if index == 0:
                self._restore_rng_at("mid")
            yield batch

    def _after_step(self, epoch: int, loss_sum: torch.Tensor) -> bool:
        """Bookkeeping after each optimizer step: progress, mid-epoch validation, periodic saves, signals.
        True when the epoch's steps are done."""
        done = self.progress
        done.step_in_epoch += 1
        done.global_step += 1
        self.guard.report(done.global_step, epoch + 1,
                          str(self.best_path) if self.best_path.is_file() else "none saved yet")
        self.bar.update()
        every = self.cfg.log_every_steps
        if done.step_in_epoch % 25 == 0 or (self.tracker is not None and every and done.global_step % every == 0):
            mean_loss = (done.loss_sum + loss_sum.item() / self.cfg.grad_accum) / done.step_in_epoch
            self.bar.set_postfix(loss=f"{mean_loss:.4f}")
            if self.tracker is not None and every and done.global_step % every == 0:
                self.tracker.log({"train/loss_running": mean_loss}, step=done.global_step)
        epoch_done = done.step_in_epoch >= self.setup.steps_per_epoch
        if validate_after_step(self.cfg, done.global_step, epoch_done):
            paused = time.perf_counter()
            self.validate(epoch)
            self.setup.model.train()
            self.epoch_clock += time.perf_counter() - paused  # validation time is not training time
        periodic = self.cfg.save_every_steps and done.global_step % self.cfg.save_every_steps == 0
        if self.stop_signal is not None or (periodic and not epoch_done):
            self._bank(loss_sum)
            self.save_state()
            if self.stop_signal is not None:
                raise Interrupted(self.stop_signal, f"epoch {epoch + 1} step {done.step_in_epoch}")
        return epoch_done

    def _bank(self, loss_sum: torch.Tensor) -> None:
        """Move the epoch's running loss and time into the saved progress (one host sync)."""
        self.progress.loss_sum += loss_sum.item() / self.cfg.grad_accum
        self.progress.seconds += time.perf_counter() - self.epoch_clock
        loss_sum.zero_()
        self.epoch_clock = time.perf_counter()

    def validate(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Score the validation set; keep the weights when they are the best so far (early stopping counts)."""
        done = self.progress
        val = evaluate(self.setup.model, self.setup.loaders["val"], self.accelerator, "validate")
        score = val[selection_metric(self.cfg)]
        observe_validation(self.setup.scheduler, score)
        is_best = score < done.best_score
        if is_best:
            done.best_score, done.best_val_mae = score, val["mae"]
            done.best_epoch, done.best_step, done.bad_validations = epoch + 1, done.global_step, 0
            if self.accelerator.is_main_process:
                save_weights(self.setup.raw_model, self.best_path, {"epoch": epoch + 1, "step": done.global_step,
                                                                    "val_mse": val["mse"], "seed": self.seed,
                                                                    "run": self.run_name, "run_id": done.run_id})
        else:
            done.bad_validations += 1
        done.validations.append({"epoch": epoch + 1, "global_step": done.global_step,
                                 "step_in_epoch": done.step_in_epoch, "val_mse": val["mse"], "val_mae": val["mae"],
                                 "is_best": is_best})
        if done.step_in_epoch < self.setup.steps_per_epoch:
            self.say(f"  step {done.global_step} (epoch {epoch + 1}) | val mse {val['mse']:.4f} "
                     f"mae {val['mae']:.4f}{' | best' if is_best else ''}")
        return val, is_best

    def end_epoch(self, epoch: int, lr: float) -> bool:
        """Validate (per --val_every), maybe score the test set, save the state; True when early stopping says stop."""
        record, val = self._epoch_record(epoch, lr)
        done = self.progress
        done.history.append(asdict(record))
        if self.tracker is not None:
            self.tracker.log(epoch_values(done.history[-1], self.guard.bad_steps), step=done.global_step)
        done.epoch, done.step_in_epoch, done.loss_sum, done.seconds = epoch + 1, 0, 0.0, 0.0
        stop = done.bad_validations >= self.cfg.patience
        done.finished = stop or done.epoch >= self.cfg.train_epochs
        self.save_state()
        self.say(self._epoch_line(record, val))
        if stop:
            self.say(f"early stopping: no better validation {selection_metric(self.cfg)} for {self.cfg.patience} "
                     "validation(s)")
        return stop

    def _epoch_record(self, epoch: int, lr: float) -> tuple[EpochRecord, dict[str, float] | None]:
        """The epoch's history entry (train loss averaged over processes) and its validation, when there was one."""
        done, cfg = self.progress, self.cfg
        totals = self.accelerator.reduce(torch.tensor([done.loss_sum, float(done.step_in_epoch)],
                                                      device=self.accelerator.device), "mean")
        train_loss = (totals[0] / totals[1]).item()
        val, is_best = self.validate(epoch) if validate_after_epoch(cfg, epoch + 1) else (None, False)
        samples = done.step_in_epoch * cfg.grad_accum * cfg.batch_size * self.accelerator.num_processes
        lr_end = self.setup.optimizer.param_groups[0]["lr"] if cfg.lradj in PER_STEP else lr  # per-step schedules
        record = EpochRecord(epoch + 1, lr, lr_end, train_loss, val and val["mse"], val and val["mae"], done.seconds,
                             done.step_in_epoch, samples / max(done.seconds, 1e-9),
                             done.seconds / max(done.step_in_epoch, 1), is_best)
        if score_test_after_epoch(cfg, epoch + 1):
            test = evaluate(self.setup.model, self.setup.loaders["test"], self.accelerator, "test")
            record.test_mse, record.test_mae = test["mse"], test["mae"]
        return record, val

    def _epoch_line(self, record: EpochRecord, val: dict[str, float] | None) -> str:
        smape = f" smape {val['smape']:.3f}" if val and selection_metric(self.cfg) == "smape" else ""
        scored = f"val mse {val['mse']:.4f} mae {val['mae']:.4f}{smape}" if val else "val -"
        tested = f" | test mse {record.test_mse:.4f}" if record.test_mse is not None else ""
        lr = f"{record.lr:.2e}{f'->{record.lr_end:.2e}' if record.lr_end != record.lr else ''}"
        return (f"epoch {record.epoch}/{self.cfg.train_epochs} | train {self.cfg.loss.lower()} "
                f"{record.train_loss:.4f} | {scored}{tested} | lr {lr} | {record.seconds:.1f} s | "
                f"{record.samples_per_s:.1f} samples/s | {record.step_s * 1000:.0f} ms/step"
                f"{' | best' if record.is_best else ''}")

    def fit(self) -> None:
        if self.cfg.resume:
            self.resume()
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for epoch in range(self.progress.epoch, self.cfg.train_epochs):
                if self.progress.finished:
                    break
                lr = self.setup.optimizer.param_groups[0]["lr"]
                self.train_epoch(epoch)
                stop = self.end_epoch(epoch, lr)
                if self.stop_signal is not None:  # arrived during the epoch's validation or save: state is saved
                    raise Interrupted(self.stop_signal, f"the end of epoch {epoch + 1}")
                if stop:
                    break
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Fit (unless --is_training 0), then score the test set with the best checkpoint and write the outputs."""
        started = time.perf_counter()
        self.say(self._header())
        for note in getattr(self.setup.data, "notes", []):
            self.say(note)
        baselines = self._baselines()
        if baselines.get("val"):
            self.say(baseline_lines("val", None, baselines["val"])[0])
        if self.cfg.is_training:
            self.fit()
            if not self.progress.best_epoch:
                raise UserError("training diverged: the validation MSE was never finite (lower --learning_rate; "
                                "under fp16 try bf16)")
        self.checkpoint_id = self._check_checkpoint_owner()
        load_weights(self.setup.raw_model, self.best_path)
        test_started = time.perf_counter()
        self.calibration = self._calibrate() if self.cfg.levels else None
        test = self._test()
        result = self._result(test, baselines, time.perf_counter() - test_started, time.perf_counter() - started)
        if self.accelerator.is_main_process:
            self._write_outputs(result, test, baselines)
        return result

    def _check_checkpoint_owner(self) -> str | None:
        """The run id in best.safetensors; under --is_training 0 it must be the one the version's results.json
        records (a checkpoint swapped in from another run is refused)."""
        found = weights_run_id(self.best_path)
        record = self.folders.results / RESULTS_FILE
        if not self.cfg.is_training and record.is_file():
            try:
                recorded = json.loads(record.read_text(encoding="utf-8")).get("run_id")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                recorded = None
            if recorded and recorded != found:
                raise UserError(f"--is_training 0: {self.best_path} was written by another run (id {found}) than "
                                f"{record} (id {recorded}); put that run's own best.safetensors back")
        return found

    def _header(self) -> str:
        setup, acc, llm = self.setup, self.accelerator, self.setup.raw_model.llm.config
        deepspeed = f"ZeRO-{deepspeed_stage(acc)}" if uses_deepspeed(self.cfg) else "off"
        return (f"run {self.run_name}\n  data {setup.data.path.name}: {setup.data.summary()['samples']} samples, "
                f"{len(setup.data.columns)} variable(s) | backbone {self.cfg.llm_model} ({llm.num_hidden_layers} "
                f"layers, {llm.hidden_size} wide) | {setup.n_trainable:,} trainable of {setup.n_total:,} parameters"
                f" | LLM sees {setup.raw_model.prompt.length} prompt + {setup.raw_model.num_patches} patch tokens | "
                f"{acc.num_processes} process(es), precision {acc.mixed_precision} ({self.precision_reason}), "
                f"DeepSpeed {deepspeed}, device {acc.device}\n  {self._steps_text()}")

    def _steps_text(self) -> str:
        cfg, setup = self.cfg, self.setup
        cap = f", capped at {setup.steps_per_epoch:,} of {setup.full_epoch_steps:,} by --max_train_steps" \
            if setup.steps_per_epoch < setup.full_epoch_steps else ""
        return (f"training {setup.steps_per_epoch:,} optimizer steps per epoch{cap} x {cfg.train_epochs} epoch(s) "
                f"(batch {cfg.batch_size} x accum {cfg.grad_accum} x {self.accelerator.num_processes} process(es))")

    def _calibrate(self) -> dict:
        """The intervals' score quantiles per level and horizon step, from the loaded checkpoint's validation
        residuals (engine/evaluate/intervals.py)."""
        loader = self.setup.loaders["val"]
        sample = ResidualSample(len(loader.dataset))
        with stop_on_signal("test"):
            evaluate(self.setup.model, loader, self.accelerator, "calibrate", observers=[sample])
        return sample.calibrate(self.cfg.levels)

    def _test(self) -> dict[str, Any]:
        """The test metrics of the loaded checkpoint (with the intervals' coverage under --levels, and per series in
        long format); a signal here stops at once (training is complete)."""
        model, loader = self.setup.model, self.setup.loaders["test"]
        with stop_on_signal("test"):
            if self.cfg.task_name == "short_term_forecast":
                return evaluate_short_term(model, loader, self.accelerator, self.setup.data)
            observers = {}
            if self.calibration is not None:
                observers["intervals"] = CoverageCounter(self.calibration, self.accelerator.device)
            data = self.setup.data
            if data.series_ids is not None:  # long format: each series' own scores too
                observers["per_series"] = SeriesScores(loader.dataset.series, data.series_ids, data.std,
                                                       self.accelerator.device)
            scores = evaluate(model, loader, self.accelerator, "test", observers=observers.values())
            return {**scores, **{name: observer.compute() for name, observer in observers.items()}}

    def _write_outputs(self, result: dict[str, Any], test: dict[str, float], baselines: dict[str, dict]) -> None:
        """results.json (a training run) or test_results.json (--is_training 0) with the plot, the table entry,
        the tracker's final values, and the summary lines."""
        cfg = self.cfg
        prefix = "" if cfg.is_training else "test_"
        if cfg.plot_windows:
            result["plot"] = str(plot_run(self.setup.raw_model, self.setup.data, cfg.plot_windows, self.accelerator,
                                          self.folders.results, self.progress.history, self.run_name,
                                          prefix + PLOT_NAME))
        if self.tracker is not None:
            self.tracker.log(final_values(test), step=self.progress.global_step)
            self.tracker.finish()
        out = write_results(self.folders.results, result, prefix + RESULTS_FILE)
        record_in_table(Path(cfg.output_dir), self.run_name, test)
        self.say(f"test  mse {test['mse']:.4f}  mae {test['mae']:.4f}  ({test['samples']} samples, best epoch "
                 f"{self.progress.best_epoch or 'from checkpoint'})")
        if baselines.get("test"):
            self.say("\n".join(baseline_lines("test", test, baselines["test"])))
        if "intervals" in test:
            self.say(coverage_line(test["intervals"]))
        self.say(f"results: {out}\ncheckpoint: {self.best_path}")
        if "owa" in test:
            self.say(f"M4 {cfg.seasonal_patterns}: smape {test['smape']:.3f}  mase {test['mase']:.3f}  "
                     f"owa {test['owa']:.3f}  (Naive2 smape {test['naive2_smape']:.3f}, "
                     f"mase {test['naive2_mase']:.3f})")

    def _baselines(self) -> dict[str, dict]:
        """Baseline scores on the validation and test windows, computed by the main process (which writes them);
        M4 has its own benchmark, Naive2, scored with the test set."""
        cfg, data = self.cfg, self.setup.data
        if cfg.task_name == "short_term_forecast" or not self.accelerator.is_main_process:
            return {}
        return score_baselines(data.datasets, cfg.seq_len, cfg.pred_len, data.season_length)

    def _result(self, test: dict[str, float], baselines: dict[str, dict], test_seconds: float,
                total_seconds: float) -> dict[str, Any]:
        """The content of results.json (README "Outputs")."""
        cfg, acc, setup, done = self.cfg, self.accelerator, self.setup, self.progress
        best = next((v for v in reversed(done.validations) if v["is_best"]), None)  # selection may be sMAPE (M4)
        train_seconds = sum(h["seconds"] for h in done.history)
        samples = sum(h["steps"] for h in done.history) * cfg.grad_accum * cfg.batch_size * acc.num_processes
        llm = setup.raw_model.llm
        return {
            "setting": self.run_name, "seed": self.seed, "config": cfg.to_dict(), "data": setup.data.summary(),
            "model": {"backbone": cfg.llm_model, "source": llm.name_or_path or cfg.llm_init,
                      "description": prompt_description(cfg, setup.data),
                      "llm_init": cfg.llm_init, "llm_layers": llm.config.num_hidden_layers,
                      "llm_dim": llm.config.hidden_size, "prompt_tokens": setup.raw_model.prompt.length,
                      "patch_tokens": setup.raw_model.num_patches},
            "params": {"total": setup.n_total, "trainable": setup.n_trainable},
            "metrics": {"val": {"mse": best["val_mse"] if best else None, "mae": best["val_mae"] if best else None,
                                "baselines": baselines.get("val")},
                        "test": {**test, "baselines": baselines.get("test", m4_baseline(test))}},
            "best_epoch": done.best_epoch or None,
            "best_step": done.best_step or None,
            "history": done.history,
            "validations": done.validations,
            "timing": {"train_epoch_s": [h["seconds"] for h in done.history],
                       "samples_per_s": samples / train_seconds if train_seconds else None,
                       "test_s": test_seconds, "total_s": total_seconds, "setup_s": self.setup_seconds},
            "memory": {**peak_memory_mb(acc.device), "after_setup_mb": self.loaded_mb},
            "precision": {"chosen": acc.mixed_precision, "reason": self.precision_reason},
            "distributed": {"num_processes": acc.num_processes, "deepspeed_stage": deepspeed_stage(acc),
                            "mixed_precision": acc.mixed_precision, "offload_optimizer": cfg.offload_optimizer,
                            "gradient_checkpointing": cfg.gradient_checkpointing, "grad_accum": cfg.grad_accum,
                            "device": str(acc.device)},
            "intervals": None if self.calibration is None else {
                "method": "split conformal, locally adaptive: half width = half_widths[level][step] x (the input "
                          "window's standard deviation + floor), in scaled units (engine/evaluate/intervals.py)",
                **self.calibration},
            "run_id": self.checkpoint_id,
            "checkpoint": os.path.relpath(self.best_path.resolve(), self.folders.results.resolve()),
            "checkpoint_absolute": str(self.best_path.resolve()),
        }


@contextmanager
def stop_on_signal(where: str):
    """SIGTERM/SIGINT stop the block at once (nothing to save there) as Interrupted(where)."""

    def stop(signum: int, _frame) -> None:
        raise Interrupted(signum, where)

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run_experiments(cfg: Config) -> list[dict[str, Any]]:
    accelerator = build_accelerator(cfg)
    results = []
    for index in range(cfg.itr):
        trainer = None
        try:
            trainer = Trainer(cfg, accelerator, index)
            results.append(trainer.run())
        except Interrupted as stop:
            name = signal.Signals(stop.signum).name
            if stop.where == "test":
                accelerator.print(f"interrupted by {name} during the test: training had finished and "
                                  f"{trainer.best_path} is complete; score it with the same flags and "
                                  "--is_training 0 (or --resume auto)")
            else:
                accelerator.print(f"interrupted by {name} at {stop}: state saved to {trainer.ckpt_dir / 'last'}; "
                                  "continue with --resume auto")
            raise SystemExit(128 + stop.signum) from None
        except BaseException:
            if trainer is not None and accelerator.is_main_process:
                trainer.folders.remove_if_empty()
            raise
        accelerator.free_memory()
    return results
