"""A run's model from its flags, and its trainable weights on disk: what training, the estimator and forecasting
all build on. Weights files hold the trainable parameters only (safetensors, no pickle); the frozen backbone is
reloaded from its source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from timellm_launcher.core.errors import UserError
from timellm_launcher.core.files import atomic_path
from timellm_launcher.data_provider.data_factory import DataBundle
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.recipes import REFERENCE_DESCRIPTION, is_reference
from timellm_launcher.models.backbone import load_backbone
from timellm_launcher.models.dwt_prompt import WaveletPromptStatistics
from timellm_launcher.models.time_llm import TimeLLM
from timellm_launcher.models.wavelets import SWT

BEST = "best.safetensors"  # the best validation's trainable weights, in a run's checkpoint folder
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # --mixed_precision -> the frozen backbone's dtype


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


def wavelet_parts(cfg: Config) -> dict[str, nn.Module | None]:
    """TimeLLM keyword arguments: `swt` (bands fed to the patch embedding), `prompt_extension` (DWT phrases)."""
    swt = SWT(cfg.swt_wavelet, cfg.swt_level, cfg.seq_len, all_coeffs=cfg.use_all_coeffs) if cfg.use_swt else None
    extension = (WaveletPromptStatistics(cfg.swt_wavelet, cfg.dwt_prompt_level, cfg.seq_len, cfg.prompt_compression)
                 if cfg.use_dwt_prompt else None)
    return {"swt": swt, "prompt_extension": extension}


class DamagedCheckpoint(UserError):
    """A checkpoint file exists but cannot be read (truncated, overwritten, not what its name says)."""


def read_checkpoint_file(path: Path, reader):
    """reader(path), with any failure to parse the file reported as one line naming it."""
    try:
        return reader(path)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: missing from the checkpoint") from None
    except Exception as err:  # noqa: BLE001 (torch.load and safetensors raise many types on damaged bytes)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DamagedCheckpoint(f"{path}: damaged checkpoint file, cannot be read ({first[:200]})") from None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True).contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(trainable_state(model), str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})


def weights_run_id(path: Path) -> str | None:
    """The id of the run that wrote a weights file (its safetensors metadata), None when it records none."""
    def read(p: Path) -> str | None:
        with safe_open(str(p), framework="pt") as handle:
            value = (handle.metadata() or {}).get("run_id")
        return json.loads(value) if value else None
    return read_checkpoint_file(path, read)


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (train this setting first, or check --checkpoints)")
    state = read_checkpoint_file(path, lambda p: load_file(str(p)))
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise UserError(f"{path} does not match this model's trainable parameters "
                        "(was it trained with other --d_model/--d_ff/--llm_model flags?)")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if params[name].shape != tensor.shape:
                raise UserError(f"{path}: parameter {name} has shape {tuple(tensor.shape)}, the model expects "
                                f"{tuple(params[name].shape)}; check the model flags")
            params[name].copy_(tensor)
