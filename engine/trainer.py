"""The training loop: train with early stopping on validation MSE, then score the test set once.

One Accelerator; Adam on the trainable parameters only; the best validation epoch's weights are
saved (trainable parameters only) and reloaded to score the test set, which keeps every sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from engine.builders import build_accelerator, build_training
from engine.checkpoint import load_weights, save_training_state, save_weights
from engine.config import Config
from engine.metrics import MetricAccumulator
from engine.results import write_results
from engine.timing import peak_memory_mb


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    val_mse: float
    val_mae: float
    seconds: float
    steps: int
    samples_per_s: float
    is_best: bool = False


@dataclass
class RunState:
    """Progress of one run; saved with the training state."""

    epoch: int = 0
    global_step: int = 0
    best_val_mse: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochRecord] = field(default_factory=list)


def _no_bar(accelerator: Accelerator) -> bool | None:
    """Bars on the main process only, and (None) only when stderr is a terminal."""
    return True if not accelerator.is_local_main_process else None


def loss_fn(name: str):
    return F.mse_loss if name == "MSE" else F.l1_loss


def forecast(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Model output aligned with the batch target (MS scores the last variable only)."""
    return model(batch["x"])[..., -batch["y"].shape[-1]:].float()


def evaluate(model: nn.Module, loader: DataLoader, accelerator: Accelerator, desc: str) -> dict[str, float]:
    """Exact metrics over every sample: gather_for_metrics drops the padding added to shard evenly."""
    model.eval()
    acc = MetricAccumulator()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, leave=False, disable=_no_bar(accelerator)):
            pred, true = accelerator.gather_for_metrics((forecast(model, batch), batch["y"]))
            acc.update(pred, true)
    return {**acc.compute(), "samples": acc.samples}


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler,
               accelerator: Accelerator, criterion) -> torch.Tensor:
    """One optimizer step; returns the detached loss (no host sync). The estimator times exactly this."""
    loss = criterion(forecast(model, batch), batch["y"])
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return loss.detach()


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler,
                accelerator: Accelerator, cfg: Config, epoch: int, max_steps: int) -> tuple[float, int, int]:
    """Returns (mean train loss, optimizer steps, samples seen across processes)."""
    model.train()
    criterion = loss_fn(cfg.loss)
    loss_sum = torch.zeros((), device=accelerator.device)
    steps = 0
    loader.set_epoch(epoch)
    bar = tqdm(total=max_steps, desc=f"epoch {epoch + 1}/{cfg.train_epochs}", leave=False,
               disable=_no_bar(accelerator), dynamic_ncols=True)
    for batch in loader:
        loss_sum += train_step(model, batch, optimizer, scheduler, accelerator, criterion)
        steps += 1
        bar.update()
        if steps % 25 == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / steps:.4f}")
        if steps >= max_steps:
            break
    bar.close()
    totals = accelerator.reduce(torch.stack([loss_sum, torch.tensor(float(steps), device=loss_sum.device)]))
    samples = steps * cfg.batch_size * accelerator.num_processes
    return (totals[0] / totals[1]).item(), steps, samples


def run_one(cfg: Config, accelerator: Accelerator, index: int) -> dict[str, Any]:
    """Train (if --is_training 1) and test one repetition of the experiment."""
    seed = cfg.seed + index
    set_seed(seed)
    run_name = f"{cfg.setting}_{index}"
    ckpt_dir = Path(cfg.checkpoints) / run_name
    best_path = ckpt_dir / "best.safetensors"
    started = time.perf_counter()

    setup = build_training(cfg, accelerator)
    data, model, raw_model, optimizer, scheduler = (setup.data, setup.model, setup.raw_model, setup.optimizer,
                                                    setup.scheduler)
    train_loader, val_loader, test_loader = setup.loaders["train"], setup.loaders["val"], setup.loaders["test"]
    n_total, n_trainable, steps_per_epoch = setup.n_total, setup.n_trainable, setup.steps_per_epoch
    say = accelerator.print
    say(f"run {run_name}\n  data {data.path.name}: {data.summary()['samples']} samples, "
        f"{len(data.columns)} variable(s) | backbone {cfg.llm_model} ({cfg.llm_layers} layers, "
        f"{raw_model.llm.config.hidden_size} wide) | {n_trainable:,} trainable of {n_total:,} parameters | "
        f"LLM sees {raw_model.prompt.length} prompt + {raw_model.num_patches} patch tokens | "
        f"{accelerator.num_processes} process(es), precision {accelerator.mixed_precision}, "
        f"device {accelerator.device}")

    state = RunState()
    if cfg.is_training:
        for epoch in range(cfg.train_epochs):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            train_loss, steps, samples = train_epoch(model, train_loader, optimizer, scheduler, accelerator, cfg,
                                                     epoch, steps_per_epoch)
            seconds = time.perf_counter() - t0
            val = evaluate(model, val_loader, accelerator, "validate")
            record = EpochRecord(epoch + 1, lr, train_loss, val["mse"], val["mae"], seconds, steps,
                                 samples / seconds)
            state.epoch, state.global_step = epoch + 1, state.global_step + steps
            if val["mse"] < state.best_val_mse:
                record.is_best = True
                state.best_val_mse, state.best_epoch, state.bad_epochs = val["mse"], epoch + 1, 0
                if accelerator.is_main_process:
                    save_weights(raw_model, best_path, {"epoch": epoch + 1, "val_mse": val["mse"], "seed": seed})
            else:
                state.bad_epochs += 1
            state.history.append(record)
            if accelerator.is_main_process:
                save_training_state(raw_model, {"optimizer": optimizer.state_dict(),
                                                "scheduler": scheduler.state_dict(), "run": state,
                                                "rng": torch.get_rng_state(), "config": cfg.to_dict()},
                                    ckpt_dir / "last")
            say(f"epoch {epoch + 1}/{cfg.train_epochs} | train {cfg.loss.lower()} {train_loss:.4f} | "
                f"val mse {val['mse']:.4f} mae {val['mae']:.4f} | lr {lr:.2e} | {seconds:.1f} s | "
                f"{record.samples_per_s:.1f} samples/s{' | best' if record.is_best else ''}")
            if state.bad_epochs >= cfg.patience:
                say(f"early stopping: no better validation MSE for {cfg.patience} epoch(s)")
                break
        accelerator.wait_for_everyone()

    load_weights(raw_model, best_path)
    t0 = time.perf_counter()
    test = evaluate(model, test_loader, accelerator, "test")
    test_seconds = time.perf_counter() - t0
    best = next((r for r in state.history if r.epoch == state.best_epoch), None)
    result = {
        "setting": run_name, "seed": seed, "config": cfg.to_dict(), "data": data.summary(),
        "model": {"backbone": cfg.llm_model, "source": raw_model.llm.name_or_path or cfg.llm_init,
                  "llm_init": cfg.llm_init, "llm_layers": cfg.llm_layers,
                  "llm_dim": raw_model.llm.config.hidden_size, "prompt_tokens": raw_model.prompt.length,
                  "patch_tokens": raw_model.num_patches},
        "params": {"total": n_total, "trainable": n_trainable},
        "metrics": {"val": {"mse": best.val_mse, "mae": best.val_mae} if best else None, "test": test},
        "best_epoch": state.best_epoch or None,
        "history": [vars(r) for r in state.history],
        "timing": {"train_epoch_s": [r.seconds for r in state.history],
                   "samples_per_s": (sum(r.steps for r in state.history) * cfg.batch_size
                                     * accelerator.num_processes / max(sum(r.seconds for r in state.history),
                                                                       1e-9)) if state.history else None,
                   "test_s": test_seconds, "total_s": time.perf_counter() - started},
        "memory": peak_memory_mb(accelerator.device),
        "distributed": {"num_processes": accelerator.num_processes,
                        "mixed_precision": accelerator.mixed_precision, "device": str(accelerator.device)},
        "checkpoint": str(best_path),
    }
    if accelerator.is_main_process:
        out = write_results(cfg, run_name, result)
        say(f"test  mse {test['mse']:.4f}  mae {test['mae']:.4f}  ({test['samples']} samples, best epoch "
            f"{state.best_epoch or 'from checkpoint'})\nresults: {out}\ncheckpoint: {best_path}")
    accelerator.free_memory()
    return result


def run_experiments(cfg: Config) -> list[dict[str, Any]]:
    accelerator = build_accelerator(cfg)
    return [run_one(cfg, accelerator, i) for i in range(cfg.itr)]
