"""The wavelet options (--use_swt, --use_dwt_prompt) turned into the model parts TimeLLM takes."""

from __future__ import annotations

from torch import nn

from timellm_launcher.engine.config import Config
from timellm_launcher.models.dwt_prompt import WaveletPromptStatistics
from timellm_launcher.models.wavelets import SWT


def wavelet_parts(cfg: Config) -> dict[str, nn.Module | None]:
    """TimeLLM keyword arguments: `swt` (bands fed to the patch embedding), `prompt_extension` (DWT phrases)."""
    swt = SWT(cfg.swt_wavelet, cfg.swt_level, cfg.seq_len, all_coeffs=cfg.use_all_coeffs) if cfg.use_swt else None
    extension = (WaveletPromptStatistics(cfg.swt_wavelet, cfg.dwt_prompt_level, cfg.seq_len, cfg.prompt_compression)
                 if cfg.use_dwt_prompt else None)
    return {"swt": swt, "prompt_extension": extension}
