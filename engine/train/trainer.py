"""The training loop: train with early stopping on validation MSE, then score the test set once.

One Accelerator; Adam on the trainable parameters only; gradient accumulation through
`accelerator.accumulate`; the best validation epoch's weights are saved (trainable parameters only)
and reloaded to score the test set, which keeps every sample. The resumable state is saved every
epoch (and every --save_every_steps), and on SIGTERM/SIGINT before exiting.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.errors import UserError
from data_provider.data_factory import fingerprint
from data_provider.device_batches import DeviceWindowLoader
from engine.config import RUN_ONLY, Config
from engine.evaluate.baselines import baseline_lines, m4_baseline, score_baselines
from engine.evaluate.metrics import MetricAccumulator
from engine.evaluate.short_term import evaluate_short_term
from engine.report.memory import peak_memory_mb
from engine.report.plots import PLOT_NAME, plot_run
from engine.report.results import RESULTS_FILE, record_in_table, write_results
from engine.report.tracking import build_tracker, epoch_values, final_values
from engine.train.accelerator import build_accelerator, deepspeed_stage, uses_deepspeed
from engine.train.builders import TrainingSetup, build_training, prompt_description
from engine.train.cadence import score_test_after_epoch, validate_after_epoch, validate_after_step
from engine.train.checkpoint import (
    DamagedCheckpoint,
    find_states,
    load_training_state,
    load_weights,
    save_training_state,
    save_weights,
    set_rng_state,
)
from engine.train.losses import Loss, build_loss
from engine.train.nan_guard import NonFiniteGuard
from engine.train.run_folders import BEST, RunFolders, choose, make_folder
from engine.train.schedules import PER_STEP, observe_validation
from models.attention import eval_attention


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
    best_val_mse: float = math.inf
    best_val_mae: float = math.inf
    best_epoch: int = 0  # the (1-based) epoch the best validation happened in, possibly mid-epoch
    best_step: int = 0  # global optimizer step of the best validation
    bad_validations: int = 0  # validations since the last improvement (early stopping counts these)
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)  # every validation, mid-epoch ones too


def _no_bar(accelerator: Accelerator) -> bool | None:
    """Bars on the main process only, and (None) only when stderr is a terminal."""
    return True if not accelerator.is_local_main_process else None


def loss_fn(name: str, seasonality: int = 1) -> Loss:
    return build_loss(name, seasonality)


def selection_metric(cfg: Config) -> str:
    """The validation score early stopping and the best checkpoint follow: sMAPE on M4 (raw scales differ by
    orders of magnitude between series), MSE otherwise."""
    return "smape" if cfg.task_name == "short_term_forecast" else "mse"


def forecast(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Model output aligned with the batch target (MS scores the last variable only)."""
    return model(batch["x"])[..., -batch["y"].shape[-1]:].float()


def train_step(setup: TrainingSetup, batch: dict[str, torch.Tensor], accelerator: Accelerator, cfg: Config,
               criterion, guard: NonFiniteGuard | None = None) -> torch.Tensor:
    """One micro-batch; the optimizer steps when the accumulation window closes. Returns the detached loss
    (no host sync without a guard; the guard syncs once to check it). The estimator times exactly this."""
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


def evaluate(model: nn.Module, loader: DataLoader, accelerator: Accelerator, desc: str) -> dict[str, float]:
    """Exact metrics over every sample: gather_for_metrics drops the padding added to shard evenly."""
    model.eval()
    acc = MetricAccumulator()
    with torch.inference_mode(), eval_attention():
        for batch in tqdm(loader, desc=desc, leave=False, disable=_no_bar(accelerator)):
            pred, true = accelerator.gather_for_metrics((forecast(model, batch), batch["y"]))
            acc.update(pred, true)
    return {**acc.compute(), "samples": acc.samples}


class Trainer:
    """One repetition (`--itr` index) of an experiment: fit, then test."""

    def __init__(self, cfg: Config, accelerator: Accelerator, index: int) -> None:
        self.cfg, self.accelerator, self.index = cfg, accelerator, index
        self.seed = cfg.seed + index
        self.say = accelerator.print
        set_seed(self.seed)
        self.setup = build_training(cfg, accelerator)  # data and model validated before any folder is made
        self.folders = self._choose_folders(f"{cfg.setting}_{index}")
        self.run_name, self.ckpt_dir = self.folders.name, self.folders.checkpoints
        self.best_path = self.ckpt_dir / BEST
        if self.folders.note:
            self.say(self.folders.note)
        self.progress = Progress()
        self.guard = NonFiniteGuard(cfg, accelerator, self.setup.trainable)
        self.tracker = build_tracker(cfg, self.run_name) if accelerator.is_main_process else None
        self.stop_signal: int | None = None
        self.pending_rng: dict | None = None

    # ------------------------------------------------------------------ state
    def _choose_folders(self, base: str) -> RunFolders:
        """The main process picks (and claims) this run's version folders; every rank gets its choice."""
        cfg, acc = self.cfg, self.accelerator
        choice: RunFolders | str | None = None
        if acc.is_main_process:
            try:
                choice = choose(Path(cfg.output_dir), Path(cfg.checkpoints), base, is_training=bool(cfg.is_training),
                                resume=cfg.resume, has_state=lambda folder: bool(find_states(folder)))
                make_folder("--output_dir", choice.results)
                make_folder("--checkpoints", choice.checkpoints)
            except UserError as err:
                choice = str(err)
        if acc.num_processes > 1:
            choice = broadcast_object_list([choice])[0]
        if isinstance(choice, str):
            raise UserError(choice)
        return choice

    def save_state(self) -> None:
        s = self.setup
        save_training_state(self.accelerator, s.model, s.raw_model, s.optimizer,
                            {"progress": asdict(self.progress), "scheduler": s.scheduler.state_dict(),
                             "config": self.cfg.to_dict(), "data_fingerprint": self.data_fingerprint},
                            self.ckpt_dir)

    @cached_property
    def data_fingerprint(self) -> str:
        return fingerprint(self.setup.data)

    def resume(self) -> None:
        states = find_states(self.ckpt_dir) if self.cfg.resume == "auto" else [Path(self.cfg.resume)]
        if not states:
            return  # run_folders already said that this run starts from scratch
        s = self.setup
        for i, folder in enumerate(states):
            try:
                saved, rng = load_training_state(self.accelerator, s.model, s.raw_model, s.optimizer, folder)
                break
            except DamagedCheckpoint as err:
                if i + 1 == len(states):
                    raise UserError(f"--resume: {err}; no intact state is left to resume from (train again without "
                                    f"--resume; {self.best_path.name} is kept)") from None
                self.say(f"--resume: {err}; resuming from the state saved before it, {states[i + 1]}")
        changed = [k for k, v in saved["config"].items() if k not in RUN_ONLY and getattr(self.cfg, k, v) != v]
        if changed:
            raise UserError(f"--resume {folder}: it was written with other values of "
                            f"{', '.join('--' + k for k in changed)}; resume with the flags it was trained with")
        if saved.get("data_fingerprint", self.data_fingerprint) != self.data_fingerprint:
            raise UserError(f"--resume {folder}: it was trained on other data than {self.setup.data.path} holds now; "
                            "resume with the data it was trained on")
        s.scheduler.load_state_dict(saved["scheduler"])
        # checkpoints written before --val_every counted early stopping in epochs ("bad_epochs")
        self.progress = Progress(**{("bad_validations" if k == "bad_epochs" else k): v
                                    for k, v in saved["progress"].items()})
        self.pending_rng = rng
        p = self.progress
        self.say(f"resumed from {folder}: {p.epoch} epoch(s) and {p.step_in_epoch} step(s) done, "
                 f"best val mse {p.best_val_mse:.4f}")

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
        cfg, acc, s, p = self.cfg, self.accelerator, self.setup, self.progress
        s.model.train()
        criterion = loss_fn(cfg.loss, s.data.seasonality)
        loader = s.loaders["train"]
        loader.set_epoch(epoch)
        skip = p.step_in_epoch * cfg.grad_accum
        if skip:
            loader = loader.skip_first(skip) if isinstance(loader, DeviceWindowLoader) else \
                acc.skip_first_batches(loader, skip)
        self._restore_rng_at("start")
        loss_sum = torch.zeros((), device=acc.device)
        micro, started = 0, time.perf_counter()
        bar = tqdm(total=s.steps_per_epoch, initial=p.step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.train_epochs}",
                   leave=False, disable=_no_bar(acc), dynamic_ncols=True)
        for batch in loader:
            if micro == 0:
                self._restore_rng_at("mid")
            loss_sum += train_step(s, batch, acc, cfg, criterion, self.guard)
            micro += 1
            if not acc.sync_gradients:
                continue
            p.step_in_epoch += 1
            p.global_step += 1
            self.guard.report(p.global_step, epoch + 1,
                              str(self.best_path) if self.best_path.is_file() else "none saved yet")
            bar.update()
            if p.step_in_epoch % 25 == 0:
                bar.set_postfix(loss=f"{(p.loss_sum + loss_sum.item() / cfg.grad_accum) / p.step_in_epoch:.4f}")
            done = p.step_in_epoch >= s.steps_per_epoch
            if validate_after_step(cfg, p.global_step, done):
                elapsed = time.perf_counter() - started
                self.validate(epoch)
                s.model.train()
                started = time.perf_counter() - elapsed  # validation time is not training time
            periodic = cfg.save_every_steps and p.global_step % cfg.save_every_steps == 0
            if self.stop_signal is not None or (periodic and not done):
                p.loss_sum += loss_sum.item() / cfg.grad_accum
                p.seconds += time.perf_counter() - started
                loss_sum.zero_()
                started = time.perf_counter()
                self.save_state()
                if self.stop_signal is not None:
                    raise Interrupted(self.stop_signal, f"epoch {epoch + 1} step {p.step_in_epoch}")
            if done:
                break
        bar.close()
        p.loss_sum += loss_sum.item() / cfg.grad_accum
        p.seconds += time.perf_counter() - started

    def validate(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Score the validation set; keep the weights when they are the best so far (early stopping counts)."""
        acc, s, p = self.accelerator, self.setup, self.progress
        val = evaluate(s.model, s.loaders["val"], acc, "validate")
        score = val[selection_metric(self.cfg)]  # best_val_mse holds the selection score (sMAPE on M4)
        observe_validation(s.scheduler, score)
        is_best = score < p.best_val_mse
        if is_best:
            p.best_val_mse, p.best_val_mae, p.best_epoch, p.best_step = score, val["mae"], epoch + 1, p.global_step
            p.bad_validations = 0
            if acc.is_main_process:
                save_weights(s.raw_model, self.best_path, {"epoch": epoch + 1, "step": p.global_step,
                                                           "val_mse": val["mse"], "seed": self.seed})
        else:
            p.bad_validations += 1
        p.validations.append({"epoch": epoch + 1, "global_step": p.global_step, "step_in_epoch": p.step_in_epoch,
                              "val_mse": val["mse"], "val_mae": val["mae"], "is_best": is_best})
        if p.step_in_epoch < s.steps_per_epoch:
            self.say(f"  step {p.global_step} (epoch {epoch + 1}) | val mse {val['mse']:.4f} mae {val['mae']:.4f}"
                     f"{' | best' if is_best else ''}")
        return val, is_best

    def end_epoch(self, epoch: int, lr: float) -> bool:
        """Validate (per --val_every), maybe score the test set, save the state; True when early stopping says stop."""
        cfg, acc, s, p = self.cfg, self.accelerator, self.setup, self.progress
        totals = acc.reduce(torch.tensor([p.loss_sum, float(p.step_in_epoch)], device=acc.device), "mean")
        train_loss = (totals[0] / totals[1]).item()
        validated = validate_after_epoch(cfg, epoch + 1)
        val, is_best = self.validate(epoch) if validated else ({"mse": None, "mae": None}, False)
        samples = p.step_in_epoch * cfg.grad_accum * cfg.batch_size * acc.num_processes
        lr_end = s.optimizer.param_groups[0]["lr"] if cfg.lradj in PER_STEP else lr  # per-step schedules move
        record = EpochRecord(epoch + 1, lr, lr_end, train_loss, val["mse"], val["mae"], p.seconds, p.step_in_epoch,
                             samples / max(p.seconds, 1e-9), p.seconds / max(p.step_in_epoch, 1), is_best)
        if score_test_after_epoch(cfg, epoch + 1):
            test = evaluate(s.model, s.loaders["test"], acc, "test")
            record.test_mse, record.test_mae = test["mse"], test["mae"]
        p.history.append(asdict(record))
        if self.tracker is not None:
            self.tracker.log(epoch_values(p.history[-1], self.guard.bad_steps), step=p.global_step)
        p.epoch, p.step_in_epoch, p.loss_sum, p.seconds = epoch + 1, 0, 0.0, 0.0
        stop = p.bad_validations >= cfg.patience
        p.finished = stop or p.epoch >= cfg.train_epochs
        self.save_state()
        smape = f" smape {val['smape']:.3f}" if validated and selection_metric(cfg) == "smape" else ""
        scored = f"val mse {val['mse']:.4f} mae {val['mae']:.4f}{smape}" if validated else "val -"
        tested = f" | test mse {record.test_mse:.4f}" if record.test_mse is not None else ""
        self.say(f"epoch {epoch + 1}/{cfg.train_epochs} | train {cfg.loss.lower()} {train_loss:.4f} | "
                 f"{scored}{tested} | lr {lr:.2e}{f'->{lr_end:.2e}' if lr_end != lr else ''} | "
                 f"{record.seconds:.1f} s | {record.samples_per_s:.1f} samples/s | "
                 f"{record.step_s * 1000:.0f} ms/step{' | best' if is_best else ''}")
        if stop:
            self.say(f"early stopping: no better validation MSE for {cfg.patience} validation(s)")
        return stop

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
                if self.end_epoch(epoch, lr):
                    break
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        cfg, acc, s = self.cfg, self.accelerator, self.setup
        started = time.perf_counter()
        llm = s.raw_model.llm.config
        self.say(f"run {self.run_name}\n  data {s.data.path.name}: {s.data.summary()['samples']} samples, "
                 f"{len(s.data.columns)} variable(s) | backbone {cfg.llm_model} ({llm.num_hidden_layers} layers, "
                 f"{llm.hidden_size} wide) | {s.n_trainable:,} trainable of {s.n_total:,} "
                 f"parameters | LLM sees {s.raw_model.prompt.length} prompt + {s.raw_model.num_patches} patch "
                 f"tokens | {acc.num_processes} process(es), precision {acc.mixed_precision}, "
                 f"DeepSpeed {'ZeRO-' + str(deepspeed_stage(acc)) if uses_deepspeed(cfg) else 'off'}, "
                 f"device {acc.device}")
        baselines = self._baselines()
        if baselines.get("val"):
            self.say(baseline_lines("val", None, baselines["val"])[0])
        if cfg.is_training:
            self.fit()
            if not self.progress.best_epoch:
                raise UserError("training diverged: the validation MSE was never finite (lower --learning_rate; "
                                "under fp16 try bf16)")
        load_weights(s.raw_model, self.best_path)
        t0 = time.perf_counter()
        with stop_on_signal("test"):
            if cfg.task_name == "short_term_forecast":
                test = evaluate_short_term(s.model, s.loaders["test"], acc, s.data, forecast)
            else:
                test = evaluate(s.model, s.loaders["test"], acc, "test")
        test_seconds = time.perf_counter() - t0
        result = self._result(test, baselines, test_seconds, time.perf_counter() - started)
        if acc.is_main_process:
            # a training run writes results.json; scoring a trained version (--is_training 0) writes beside it
            prefix = "" if cfg.is_training else "test_"
            if cfg.plot_windows:
                result["plot"] = str(plot_run(s.raw_model, s.data, cfg.plot_windows, acc, self.folders.results,
                                              self.progress.history, self.run_name, prefix + PLOT_NAME))
            if self.tracker is not None:
                self.tracker.log(final_values(test), step=self.progress.global_step)
                self.tracker.finish()
            out = write_results(self.folders.results, result, prefix + RESULTS_FILE)
            record_in_table(Path(cfg.output_dir), self.run_name, test)
            self.say(f"test  mse {test['mse']:.4f}  mae {test['mae']:.4f}  ({test['samples']} samples, best epoch "
                     f"{self.progress.best_epoch or 'from checkpoint'})")
            if baselines.get("test"):
                self.say("\n".join(baseline_lines("test", test, baselines["test"])))
            self.say(f"results: {out}\ncheckpoint: {self.best_path}")
            if "owa" in test:
                self.say(f"M4 {cfg.seasonal_patterns}: smape {test['smape']:.3f}  mase {test['mase']:.3f}  "
                         f"owa {test['owa']:.3f}  (Naive2 smape {test['naive2_smape']:.3f}, "
                         f"mase {test['naive2_mase']:.3f})")
        return result

    def _baselines(self) -> dict[str, dict]:
        """Baseline scores on the validation and test windows, computed by the main process (which writes them);
        M4 has its own benchmark, Naive2, scored with the test set."""
        cfg, data = self.cfg, self.setup.data
        if cfg.task_name == "short_term_forecast" or not self.accelerator.is_main_process:
            return {}
        return score_baselines(data.datasets, data.datasets["train"].values.numpy(), cfg.seq_len, cfg.pred_len,
                               data.season_length)

    def _result(self, test: dict[str, float], baselines: dict[str, dict], test_seconds: float,
                total_seconds: float) -> dict[str, Any]:
        cfg, acc, s, p = self.cfg, self.accelerator, self.setup, self.progress
        best = next((v for v in reversed(p.validations) if v["is_best"]), None)  # selection may be sMAPE (M4)
        train_seconds = sum(h["seconds"] for h in p.history)
        samples = sum(h["steps"] for h in p.history) * cfg.grad_accum * cfg.batch_size * acc.num_processes
        return {
            "setting": self.run_name, "seed": self.seed, "config": cfg.to_dict(), "data": s.data.summary(),
            "model": {"backbone": cfg.llm_model, "source": s.raw_model.llm.name_or_path or cfg.llm_init,
                      "description": prompt_description(cfg, s.data),
                      "llm_init": cfg.llm_init, "llm_layers": s.raw_model.llm.config.num_hidden_layers,
                      "llm_dim": s.raw_model.llm.config.hidden_size, "prompt_tokens": s.raw_model.prompt.length,
                      "patch_tokens": s.raw_model.num_patches},
            "params": {"total": s.n_total, "trainable": s.n_trainable},
            "metrics": {"val": {"mse": best["val_mse"] if best else None, "mae": best["val_mae"] if best else None,
                                "baselines": baselines.get("val")},
                        "test": {**test, "baselines": baselines.get("test", m4_baseline(test))}},
            "best_epoch": p.best_epoch or None,
            "best_step": p.best_step or None,
            "history": p.history,
            "validations": p.validations,
            "timing": {"train_epoch_s": [h["seconds"] for h in p.history],
                       "samples_per_s": samples / train_seconds if train_seconds else None,
                       "test_s": test_seconds, "total_s": total_seconds},
            "memory": peak_memory_mb(acc.device),
            "distributed": {"num_processes": acc.num_processes, "deepspeed_stage": deepspeed_stage(acc),
                            "mixed_precision": acc.mixed_precision, "offload_optimizer": cfg.offload_optimizer,
                            "gradient_checkpointing": cfg.gradient_checkpointing, "grad_accum": cfg.grad_accum,
                            "device": str(acc.device)},
            "checkpoint": str(self.best_path.resolve()),
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
        accelerator.free_memory()
    return results
