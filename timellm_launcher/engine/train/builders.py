"""The builders both CLIs call, so the estimator times exactly what training runs: the data, the model, the
optimizer (`--optimizer`, `--weight_decay`) with the learning rate it starts from (`--scale_lr`), the schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch import nn

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataBundle, build_data, build_loaders
from timellm_launcher.data_provider.device_batches import DeviceWindowLoader
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.model_io import build_model, prompt_description
from timellm_launcher.engine.recipes import adam_betas, is_reference
from timellm_launcher.engine.recipes import summary as recipe_summary
from timellm_launcher.engine.runtime import compile_regions, configure_backends
from timellm_launcher.engine.train.accelerator import compute_dtype
from timellm_launcher.engine.train.losses import Loss, build_loss
from timellm_launcher.engine.train.schedules import build_scheduler, schedule_params
from timellm_launcher.models.time_llm import TimeLLM


@dataclass
class TrainingSetup:
    """Everything a training step needs, prepared by the Accelerator."""

    accelerator: Accelerator
    criterion: Loss
    max_grad_norm: float  # 0: no clipping
    data: DataBundle
    model: torch.nn.Module  # prepared (possibly wrapped); `raw_model` is the TimeLLM itself
    raw_model: TimeLLM
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loaders: dict[str, torch.utils.data.DataLoader]
    trainable: list[torch.nn.Parameter]
    steps_per_epoch: int  # optimizer steps an epoch trains (--max_train_steps caps them)
    full_epoch_steps: int  # optimizer steps in one pass over the training data
    n_total: int
    n_trainable: int


def effective_lr(cfg: Config, num_processes: int) -> float:
    """--learning_rate, or with --scale_lr the square-root rule on the global batch:
    lr * sqrt(batch_size * processes * grad_accum / base_batch_size)."""
    if not cfg.scale_lr:
        return cfg.learning_rate
    global_batch = cfg.batch_size * num_processes * cfg.grad_accum
    return cfg.learning_rate * math.sqrt(global_batch / cfg.base_batch_size)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) \
        or "norm" in type(module).__name__.lower()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split for AdamW: weights decay; biases, norm weights and other 1-D tensors do not."""
    norm_params = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or name.endswith("bias") or id(param) in norm_params:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: Config, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Fused Adam (no weight decay) or fused AdamW with decoupled decay on the weights only."""
    if cfg.optimizer == "adamw":
        groups = [g for g in decay_groups(model, cfg.weight_decay) if g["params"]]
        return torch.optim.AdamW(groups, lr=lr, betas=adam_betas(cfg), fused=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all tensors instead of a loop over them (benchmarks/README.md, --ablate)
    return torch.optim.Adam(trainable, lr=lr, betas=adam_betas(cfg), fused=True)


def build_training(cfg: Config, accelerator: Accelerator) -> TrainingSetup:
    """Data, model, the optimizer on the trainable parameters, prepared loaders and the --lradj schedule."""
    configure_backends(accelerator.device, compute_dtype(accelerator))
    data = build_data(cfg.data_options())
    loaders = build_loaders(data, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                            num_workers=cfg.num_workers, prefetch_factor=cfg.prefetch_factor)
    model = build_model(cfg, prompt_description(cfg, data), compute_dtype(accelerator), accelerator.device)
    if cfg.compile:
        compile_regions(model, model.llm, cfg.compile_mode)
    n_total = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr = effective_lr(cfg, accelerator.num_processes)
    if cfg.scale_lr:
        accelerator.print(f"--scale_lr: learning rate {cfg.learning_rate:g} x sqrt(global batch "
                          f"{cfg.batch_size * accelerator.num_processes * cfg.grad_accum} / {cfg.base_batch_size}) "
                          f"= {lr:.4g}")
    if is_reference(cfg):
        accelerator.print(recipe_summary(cfg, lr))
    optimizer = build_optimizer(cfg, model, lr)
    model, optimizer, train, val, test = accelerator.prepare(model, optimizer, loaders["train"], loaders["val"],
                                                             loaders["test"])
    if cfg.device_data:  # the prepared DataLoader still told DeepSpeed the micro-batch size
        train = DeviceWindowLoader(data.datasets["train"], cfg.batch_size, accelerator.device,
                                   seed=torch.initial_seed(), num_processes=accelerator.num_processes,
                                   process_index=accelerator.process_index)
    batches = len(train) // cfg.grad_accum  # optimizer steps in one pass over the (sharded) loader
    if batches < 1:
        raise UserError(f"--grad_accum {cfg.grad_accum} exceeds the {len(train)} training batches per process")
    steps_per_epoch = min(batches, cfg.max_train_steps or batches)
    scheduler = build_scheduler(optimizer, cfg.lradj, lr, steps_per_epoch, schedule_params(cfg))
    return TrainingSetup(accelerator=accelerator, criterion=build_loss(cfg.loss, data.seasonality),
                         max_grad_norm=cfg.max_grad_norm, data=data, model=model,
                         raw_model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                         loaders={"train": train, "val": val, "test": test}, trainable=trainable,
                         steps_per_epoch=steps_per_epoch, full_epoch_steps=batches, n_total=n_total,
                         n_trainable=sum(p.numel() for p in trainable))
