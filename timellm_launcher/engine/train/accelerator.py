"""The one place that builds the Accelerator: precision, DeepSpeed ZeRO, process group.

Two ways into DeepSpeed give one result: `accelerate launch --use_deepspeed --deepspeed_config_file F`
and `run_main.py --deepspeed [--ds_config F]` both load F, fill its "auto" gradient accumulation and
clipping from our flags, add the optimizer offload when asked, and hand the dict to one plugin.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DeepSpeedPlugin, InitProcessGroupKwargs

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.model_io import DTYPES

DEFAULT_DS_CONFIG = Path(__file__).resolve().parents[2] / "ds_config_zero2.json"


def uses_deepspeed(cfg: Config) -> bool:
    return cfg.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


# CPU feature flags of native bf16 matrix arithmetic, first match wins: x86 AMX tiles (Sapphire Rapids and later),
# x86 AVX512-BF16 dot products (AMD Zen 4 and later, Intel Cooper Lake), ARM FEAT_BF16 with BFMMLA (Graviton 3 and
# later, Neoverse V1/V2/N2, Apple M2 and later). benchmarks/precision.py times the whole training step both ways.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags: /proc/cpuinfo's "flags" (x86) or "Features" (ARM) line; on macOS, FEAT_BF16 from
    sysctl. Empty when neither can be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            found = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
            return {"bf16"} if found.stdout.strip() == "1" else set()
        except OSError:
            pass
    return set()


def native_bf16(flags: set[str] | None = None) -> str | None:
    """Why bf16 is at least as fast as fp32 here (a GPU with bf16, or the CPU flag that says so), or None: on CPUs
    without bf16 instructions bf16 is emulated and several times slower than fp32."""
    if flags is None and torch.cuda.is_available():
        return "cuda bf16" if torch.cuda.is_bf16_supported() else None
    flags = cpu_flags() if flags is None else flags
    return next((flag for flag in BF16_CPU_FLAGS if flag in flags), None)


def precision_choice(cfg: Config) -> tuple[str | None, str]:
    """(precision, why): --mixed_precision no|fp16|bf16 as given; under auto: --use_amp's choice (bf16 where
    supported, else fp16), else None where accelerate launch chose (its --mixed_precision), else bf16 where the
    device computes it natively, else no."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision, f"--mixed_precision {cfg.mixed_precision}"
    if cfg.use_amp:
        bf16_ok = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else True
        return ("bf16", "--use_amp") if bf16_ok else ("fp16", "--use_amp (no bf16 on this GPU)")
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return None, f"accelerate launch --mixed_precision {os.environ['ACCELERATE_MIXED_PRECISION']}"
    reason = native_bf16()
    return ("bf16", reason) if reason else ("no", "no native bf16 on this device: fp32 is faster")


def load_ds_config(cfg: Config) -> dict[str, Any]:
    path = Path(cfg.ds_config or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE") or DEFAULT_DS_CONFIG)
    if not path.is_file():
        raise UserError(f"--ds_config {path}: file not found")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"--ds_config {path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(config, dict) or not isinstance(config.get("zero_optimization"), dict):
        raise UserError(f"--ds_config {path}: needs a \"zero_optimization\" section")
    stage = config["zero_optimization"].get("stage")
    if stage not in (0, 1, 2, 3):
        raise UserError(f"--ds_config {path}: zero_optimization.stage must be 0-3, got {stage!r}")
    if config.get("gradient_accumulation_steps", "auto") == "auto":
        config["gradient_accumulation_steps"] = cfg.grad_accum
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = cfg.max_grad_norm
    if cfg.offload_optimizer == "cpu":
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return config


def _ensure_rank_env() -> None:
    """A plain `python run_main.py --deepspeed` is a world of one: give DeepSpeed the rendezvous it expects."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def build_accelerator(cfg: Config) -> Accelerator:
    precision = precision_choice(cfg)[0]
    plugin = None
    if uses_deepspeed(cfg):
        effective = precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        if effective == "fp16" and not torch.cuda.is_available():
            raise UserError("fp16 is not supported by DeepSpeed on CPU; use --mixed_precision bf16 (or no)")
        config = load_ds_config(cfg)
        _ensure_rank_env()
        from deepspeed.utils import logger as deepspeed_logger

        deepspeed_logger.setLevel(logging.WARNING)  # its INFO lines would drown the epoch summaries
        plugin = DeepSpeedPlugin(hf_ds_config=config, gradient_accumulation_steps=config["gradient_accumulation_steps"],
                                 gradient_clipping=config["gradient_clipping"],
                                 zero_stage=config["zero_optimization"]["stage"],
                                 offload_optimizer_device=cfg.offload_optimizer)
    elif cfg.offload_optimizer != "none":
        raise UserError("--offload_optimizer cpu needs DeepSpeed (--deepspeed, or accelerate launch --use_deepspeed)")
    launched = "RANK" in os.environ  # accelerate launch / torchrun / --deepspeed: a process group follows
    handlers = [InitProcessGroupKwargs(backend="gloo")] if launched and not torch.cuda.is_available() else []
    return Accelerator(mixed_precision=precision, deepspeed_plugin=plugin, gradient_accumulation_steps=cfg.grad_accum,
                       kwargs_handlers=handlers, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                 non_blocking=torch.cuda.is_available()))


def compute_dtype(accelerator: Accelerator) -> torch.dtype:
    """Frozen weights are held in the mixed-precision dtype to halve their memory; fp32 otherwise."""
    return DTYPES.get(accelerator.mixed_precision, torch.float32)


def deepspeed_stage(accelerator: Accelerator) -> int | None:
    plugin = accelerator.state.deepspeed_plugin
    return None if plugin is None else int(plugin.zero_stage)
