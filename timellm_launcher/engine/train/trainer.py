"""One experiment: epochs of the training loop (engine/train/loop.py) with validation, early stopping,
checkpoints and signals, then the test set scored once with the best checkpoint.

One Accelerator; the best validation's weights (trainable parameters only) are saved and reloaded to score the
test set, which keeps every sample. The resumable state is saved every epoch (and every --save_every_steps), and on
SIGTERM/SIGINT before exiting. What the run prints and writes is engine/report/run_report.py's.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import fingerprint
from timellm_launcher.data_provider.device_batches import DeviceWindowLoader
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.evaluate.baselines import baseline_lines, score_baselines
from timellm_launcher.engine.evaluate.intervals import CoverageCounter, ResidualSample
from timellm_launcher.engine.evaluate.loop import evaluate, evaluate_short_term
from timellm_launcher.engine.evaluate.metrics import SeriesScores
from timellm_launcher.engine.model_io import BEST, load_weights, prompt_description, save_weights
from timellm_launcher.engine.progress import progress
from timellm_launcher.engine.report import run_report
from timellm_launcher.engine.report.memory import MemoryMeter, peak_memory_mb
from timellm_launcher.engine.report.tracking import build_tracker, epoch_values
from timellm_launcher.engine.train.accelerator import build_accelerator, deepspeed_stage, precision_choice
from timellm_launcher.engine.train.builders import build_training
from timellm_launcher.engine.train.checkpoint import (
    check_checkpoint_owner,
    check_resumable,
    find_states,
    resume_from,
    save_training_state,
    set_rng_state,
)
from timellm_launcher.engine.train.loop import train_steps
from timellm_launcher.engine.train.nan_guard import NonFiniteGuard
from timellm_launcher.engine.train.run_folders import claim_folders
from timellm_launcher.engine.train.run_state import Interrupted, Progress, on_signals, stop_on_signal
from timellm_launcher.engine.train.schedules import (
    PER_STEP,
    observe_validation,
    score_test_after_epoch,
    validate_after_epoch,
    validate_after_step,
)


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
        self.folders = claim_folders(cfg, accelerator, f"{cfg.setting}_{index}",
                                     has_state=lambda folder: bool(find_states(folder)))
        self.run_name, self.ckpt_dir = self.folders.name, self.folders.checkpoints
        self.best_path = self.ckpt_dir / BEST
        if self.folders.note:
            self.say(self.folders.note)
        self.progress = Progress()
        self.guard = NonFiniteGuard(cfg, accelerator, self.setup.trainable)
        self.tracker = build_tracker(cfg, self.run_name) if accelerator.is_main_process else None
        self.precision_reason = precision_choice(cfg)[1]
        self.stop_signal: int | None = None
        self.pending_rng: dict | None = None

    # ------------------------------------------------------------------ state
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
        folder, saved, self.pending_rng = resume_from(
            states, self.accelerator, setup, say=self.say, kept=self.best_path.name,
            check=lambda f, s: check_resumable(f, s, self.cfg, self.data_fingerprint, setup.data.path))
        setup.scheduler.load_state_dict(saved["scheduler"])
        self.progress = Progress(**saved["progress"])
        self.say(f"resumed from {folder}: {self.progress.epoch} epoch(s) and {self.progress.step_in_epoch} step(s) "
                 f"done, best validation {self.cfg.selection_metric} {self.progress.best_score:.4f}")

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
        """One pass over the training loader (the rest of it, after a mid-epoch resume), with the bookkeeping after
        each optimizer step: progress, mid-epoch validation, periodic saves, signals."""
        cfg, setup = self.cfg, self.setup
        setup.model.train()
        bar = progress(total=setup.steps_per_epoch, initial=self.progress.step_in_epoch,
                       desc=f"epoch {epoch + 1}/{cfg.train_epochs}", show=self.accelerator.is_local_main_process)
        self.epoch_clock = time.perf_counter()
        loss_sum = torch.zeros((), device=self.accelerator.device)  # the epoch's losses, summed on the device
        for _ in train_steps(setup, self._epoch_batches(epoch), self.guard, loss_sum):
            self.progress.step_in_epoch += 1
            self.progress.global_step += 1
            self.guard.report(self.progress.global_step, epoch + 1,
                              str(self.best_path) if self.best_path.is_file() else "none saved yet")
            bar.update()
            self._show_running_loss(bar, loss_sum)
            epoch_done = self.progress.step_in_epoch >= setup.steps_per_epoch
            if validate_after_step(cfg, self.progress.global_step, epoch_done):
                paused = time.perf_counter()
                self.validate(epoch)
                setup.model.train()
                self.epoch_clock += time.perf_counter() - paused  # validation time is not training time
            periodic = cfg.save_every_steps and self.progress.global_step % cfg.save_every_steps == 0
            if self.stop_signal is not None or (periodic and not epoch_done):
                self._bank(loss_sum)
                self.save_state()
                if self.stop_signal is not None:
                    raise Interrupted(self.stop_signal, f"epoch {epoch + 1} step {self.progress.step_in_epoch}")
            if epoch_done:
                break
        bar.close()
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

    def _show_running_loss(self, bar, loss_sum: torch.Tensor) -> None:
        """The epoch's mean loss on the progress bar every 25 steps and to the tracker every --log_every_steps
        (a host sync each time, so not every step)."""
        every = self.cfg.log_every_steps
        to_tracker = self.tracker is not None and every and self.progress.global_step % every == 0
        if self.progress.step_in_epoch % 25 == 0 or to_tracker:
            running = self.progress.loss_sum + loss_sum.item() / self.cfg.grad_accum
            mean_loss = running / self.progress.step_in_epoch
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            if to_tracker:
                self.tracker.log({"train/loss_running": mean_loss}, step=self.progress.global_step)

    def _bank(self, loss_sum: torch.Tensor) -> None:
        """Move the epoch's running loss and time into the saved progress (one host sync)."""
        self.progress.loss_sum += loss_sum.item() / self.cfg.grad_accum
        self.progress.seconds += time.perf_counter() - self.epoch_clock
        loss_sum.zero_()
        self.epoch_clock = time.perf_counter()

    def validate(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Score the validation set; keep the weights when they are the best so far (early stopping counts)."""
        val = evaluate(self.setup.model, self.setup.loaders["val"], self.accelerator, "validate")
        score = val[self.cfg.selection_metric]
        observe_validation(self.setup.scheduler, score)
        is_best = self.progress.record_validation(epoch + 1, score, val)
        if is_best and self.accelerator.is_main_process:
            save_weights(self.setup.raw_model, self.best_path,
                         {"epoch": epoch + 1, "step": self.progress.global_step, "val_mse": val["mse"],
                          "seed": self.seed, "run": self.run_name, "run_id": self.progress.run_id})
        if self.progress.step_in_epoch < self.setup.steps_per_epoch:
            self.say(f"  step {self.progress.global_step} (epoch {epoch + 1}) | val mse {val['mse']:.4f} "
                     f"mae {val['mae']:.4f}{' | best' if is_best else ''}")
        return val, is_best

    def end_epoch(self, epoch: int, lr: float) -> bool:
        """Record the epoch (validating per --val_every, testing per --test_every), save the state; True when early
        stopping says stop."""
        cfg, acc = self.cfg, self.accelerator
        steps, seconds = self.progress.step_in_epoch, self.progress.seconds
        totals = acc.reduce(torch.tensor([self.progress.loss_sum, float(steps)], device=acc.device), "mean")
        val, is_best = self.validate(epoch) if validate_after_epoch(cfg, epoch + 1) else (None, False)
        samples = steps * cfg.grad_accum * cfg.batch_size * acc.num_processes
        record = {"epoch": epoch + 1, "lr": lr,
                  "lr_end": self.setup.optimizer.param_groups[0]["lr"] if cfg.lradj in PER_STEP else lr,
                  "train_loss": (totals[0] / totals[1]).item(), "val_mse": val and val["mse"],
                  "val_mae": val and val["mae"], "seconds": seconds, "steps": steps,
                  "samples_per_s": samples / max(seconds, 1e-9), "step_s": seconds / max(steps, 1),
                  "is_best": is_best, "test_mse": None, "test_mae": None}
        if score_test_after_epoch(cfg, epoch + 1):
            test = evaluate(self.setup.model, self.setup.loaders["test"], acc, "test")
            record["test_mse"], record["test_mae"] = test["mse"], test["mae"]
        if self.tracker is not None:
            self.tracker.log(epoch_values(record, self.guard.bad_steps), step=self.progress.global_step)
        stop = self.progress.close_epoch(record, cfg.patience, cfg.train_epochs)
        self.save_state()
        self.say(run_report.epoch_line(cfg, record, val))
        if stop:
            self.say(f"early stopping: no better validation {cfg.selection_metric} for {cfg.patience} validation(s)")
        return stop

    def fit(self) -> None:
        if self.cfg.resume:
            self.resume()
        with on_signals(self._on_signal):
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
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Fit (unless --is_training 0), then score the test set with the best checkpoint and write the outputs."""
        cfg, setup, acc = self.cfg, self.setup, self.accelerator
        started = time.perf_counter()
        self.say(run_report.header(cfg, setup, acc, self.run_name, self.precision_reason, deepspeed_stage(acc)))
        for note in getattr(setup.data, "notes", []):
            self.say(note)
        baselines = {} if cfg.is_short_term or not acc.is_main_process else \
            score_baselines(setup.data.datasets, cfg.seq_len, cfg.pred_len, setup.data.season_length)
        if baselines.get("val"):
            self.say(baseline_lines("val", None, baselines["val"])[0])
        if cfg.is_training:
            self.fit()
            if not self.progress.best_epoch:
                raise UserError("training diverged: the validation MSE was never finite (lower --learning_rate; "
                                "under fp16 try bf16)")
        run_id = check_checkpoint_owner(self.best_path, self.folders.results, bool(cfg.is_training))
        load_weights(setup.raw_model, self.best_path)
        test_started = time.perf_counter()
        with stop_on_signal("test"):  # training is complete: a signal here stops at once
            calibration = self._calibrate() if cfg.levels else None
            test = self._test(calibration)
        timing = {"test_s": time.perf_counter() - test_started, "total_s": time.perf_counter() - started,
                  "setup_s": self.setup_seconds}
        result = run_report.result_record(
            cfg, setup, acc, asdict(self.progress), run_name=self.run_name, seed=self.seed,
            description=prompt_description(cfg, setup.data), test=test, baselines=baselines, timing=timing,
            memory={**peak_memory_mb(acc.device), "after_setup_mb": self.loaded_mb},
            precision_reason=self.precision_reason, deepspeed_stage=deepspeed_stage(acc), calibration=calibration,
            run_id=run_id, best_path=self.best_path, results_folder=self.folders.results)
        if acc.is_main_process:
            self._write_outputs(result, test, baselines)
        return result

    def _calibrate(self) -> dict:
        """The intervals' score quantiles per level and horizon step, from the loaded checkpoint's validation
        residuals (engine/evaluate/intervals.py)."""
        loader = self.setup.loaders["val"]
        sample = ResidualSample(len(loader.dataset))
        evaluate(self.setup.model, loader, self.accelerator, "calibrate", observers=[sample])
        return sample.calibrate(self.cfg.levels)

    def _test(self, calibration: dict | None) -> dict[str, Any]:
        """The test metrics of the loaded checkpoint, with the intervals' coverage under --levels and each series'
        own scores in long format."""
        model, loader, data = self.setup.model, self.setup.loaders["test"], self.setup.data
        device = self.accelerator.device
        if self.cfg.is_short_term:
            return evaluate_short_term(model, loader, self.accelerator, data)
        observers = {}
        if calibration is not None:
            observers["intervals"] = CoverageCounter(calibration, device)
        if data.series_ids is not None:
            observers["per_series"] = SeriesScores(loader.dataset.series, data.series_ids, data.std, device)
        scores = evaluate(model, loader, self.accelerator, "test", observers=observers.values())
        return {**scores, **{name: observer.compute() for name, observer in observers.items()}}

    def _write_outputs(self, result: dict[str, Any], test: dict[str, Any], baselines: dict[str, dict]) -> None:
        """results.json (test_results.json under --is_training 0), the plot, the table entry, the tracker's final
        values, and the closing summary."""
        lines = run_report.write_outputs(self.cfg, self.setup, self.accelerator, result, test, baselines,
                                         tracker=self.tracker, progress=self.progress, run_name=self.run_name,
                                         results_folder=self.folders.results, best_path=self.best_path)
        self.say("\n".join(lines))


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
