"""Real DeepSpeed ZeRO-2 engines in this process (rank environment set here, gloo): stage, optimizer,
precision, learning, and that offload and activation checkpointing leave the math unchanged."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import reset_accelerate
from timellm_launcher.engine.config import Config


@pytest.fixture(scope="module")
def rank_env():
    """A world of one, as a launcher would set it. DeepSpeed caches its process groups, so one group serves
    the whole module and is torn down at its end."""
    saved = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29600 + os.getpid() % 300)}.items():
            mp.setenv(key, value)
        yield
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)  # Accelerate also exports ACCELERATE_USE_DEEPSPEED & co.


def _setup(ett_root, **overrides):
    from accelerate.utils import set_seed

    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training

    cfg = Config(data="ETTh1", root_path=str(ett_root), features="S", llm_model="GPT2", llm_init="random",
                 llm_layers=1, llm_dim=64, num_tokens=100, d_model=8, d_ff=16, n_heads=2, seq_len=48, pred_len=12,
                 patch_len=8, stride=8, batch_size=16, learning_rate=0.005, **overrides).validate()
    reset_accelerate()  # keeps the process group, drops the previous engine's settings
    set_seed(cfg.seed)
    accelerator = build_accelerator(cfg)
    return cfg, accelerator, build_training(cfg, accelerator)


def _steps(setup, n: int) -> list[float]:
    from timellm_launcher.engine.train.loop import train_step

    setup.model.train()
    losses, batches = [], iter(setup.loaders["train"])
    for _ in range(n):
        losses.append(train_step(setup, next(batches)).item())
    return losses


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_in_process_engine_is_zero2_and_learns(ett_root, rank_env, precision):
    from deepspeed import DeepSpeedEngine
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    cfg, accelerator, setup = _setup(ett_root, deepspeed=True, mixed_precision=precision)
    assert isinstance(setup.model, DeepSpeedEngine)
    assert setup.model.zero_optimization_stage() == 2
    assert isinstance(setup.model.optimizer, DeepSpeedZeroOptimizer)
    assert setup.model.bfloat16_enabled() == (precision == "bf16")
    losses = _steps(setup, 30)
    assert sum(losses[-10:]) < sum(losses[:10]), losses


def _one_step_params(ett_root, **overrides) -> dict[str, torch.Tensor]:
    cfg, accelerator, setup = _setup(ett_root, deepspeed=True, **overrides)
    _steps(setup, 2)
    return {n: p.detach().float().clone() for n, p in setup.raw_model.named_parameters() if p.requires_grad}


def test_offload_matches_no_offload(ett_root, rank_env):
    """Same ZeRO-2 math, fp32, on the same CPU: only where the optimizer state lives differs, so the updated
    weights agree to float rounding (1e-6)."""
    base = _one_step_params(ett_root)
    offload = _one_step_params(ett_root, offload_optimizer="cpu")
    for name in base:
        torch.testing.assert_close(offload[name], base[name], rtol=1e-6, atol=1e-6)


def test_gradient_checkpointing_matches(ett_root, rank_env):
    """Checkpointing recomputes the same deterministic backbone ops in backward (no dropout inside it): same
    gradients and updates up to float rounding (1e-6)."""
    base = _one_step_params(ett_root)
    checkpointed = _one_step_params(ett_root, gradient_checkpointing=True)
    for name in base:
        torch.testing.assert_close(checkpointed[name], base[name], rtol=1e-6, atol=1e-6)


