"""The builders both CLIs call, so the estimator times exactly what training runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataBundle, build_data, build_loaders
from timellm_launcher.data_provider.device_batches import DeviceWindowLoader
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.recipes import REFERENCE_DESCRIPTION, is_reference
from timellm_launcher.engine.recipes import summary as recipe_summary
from timellm_launcher.engine.runtime import compile_regions, configure_backends
from timellm_launcher.engine.train.accelerator import compute_dtype
from timellm_launcher.engine.train.optim import build_optimizer, effective_lr
from timellm_launcher.engine.train.schedules import build_scheduler, schedule_params
from timellm_launcher.engine.train.wavelet_options import wavelet_parts
from timellm_launcher.models.backbone import load_backbone
from timellm_launcher.models.time_llm import TimeLLM


def prompt_description(cfg: Config, data: DataBundle) -> str:
    """The dataset's own description; under --recipe reference the reference's one sentence about ETT. A run
    records it (results.json model.description), so a forecast rebuilds the same prompt without the data."""
    if not cfg.prompt_domain:
        return REFERENCE_DESCRIPTION if is_reference(cfg) else data.description
    if cfg.content:
        return cfg.content
    path = Path(cfg.prompt_bank_dir) / f"{cfg.data}.txt"
    if not path.is_file():
        raise UserError(f"--prompt_domain 1: no --content and no prompt bank file {path} "
                        "(set --prompt_bank_dir or pass --content TEXT)")
    return path.read_text(encoding="utf-8").strip()


def build_model(cfg: Config, description: str, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> TimeLLM:
    """The TimeLLM of these flags on `device`: the frozen backbone in `dtype`, loaded straight there."""
    backbone = load_backbone(cfg.llm_model, llm_path=cfg.llm_path, llm_init=cfg.llm_init,
                             llm_layers=cfg.llm_layers, llm_dim=cfg.llm_dim,
                             allow_download=cfg.allow_download, dtype=dtype, device=device)
    if cfg.d_ff > backbone.hidden_size:
        raise UserError(f"--d_ff {cfg.d_ff} exceeds the backbone width {backbone.hidden_size}; lower it")
    model = TimeLLM(backbone, description=description, seq_len=cfg.seq_len,
                    pred_len=cfg.pred_len, d_model=cfg.d_model, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                    patch_len=cfg.patch_len, stride=cfg.stride, num_tokens=cfg.num_tokens, dropout=cfg.dropout,
                    use_llm=cfg.llm_model.lower() != "none", **wavelet_parts(cfg),
                    prompt_style="reference" if is_reference(cfg) else "default").to(device)
    if cfg.gradient_checkpointing:
        backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    limit = getattr(backbone.model.config, "max_position_embeddings", None)
    if limit and model.use_llm and model.sequence_length > limit:
        raise UserError(f"the LLM would see {model.sequence_length} tokens ({model.prompt.length} prompt + "
                        f"{model.num_patches} patches) but {cfg.llm_model} takes at most {limit}; "
                        "shorten --seq_len or raise --stride/--patch_len")
    return model


@dataclass
class TrainingSetup:
    """Everything a training step needs, prepared by the Accelerator."""

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
    return TrainingSetup(data=data, model=model, raw_model=accelerator.unwrap_model(model), optimizer=optimizer,
                         scheduler=scheduler, loaders={"train": train, "val": val, "test": test},
                         trainable=trainable,
                         steps_per_epoch=steps_per_epoch, full_epoch_steps=batches, n_total=n_total,
                         n_trainable=sum(p.numel() for p in trainable))
