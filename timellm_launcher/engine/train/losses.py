"""Training losses (`--loss`): each takes the forecast and the batch, since MASE scales by the input window.

SMAPE, MAPE and MASE are the M4 competition's definitions (in percent for SMAPE/MAPE); a ratio whose
denominator is zero counts as 0, as in the Time-Series-Library's `divide_no_nan`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from timellm_launcher.engine.evaluate.metrics import ape_terms, safe_ratio, smape_terms

Loss = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


def smape(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The denominator carries no gradient, as in the reference (and N-BEATS): the loss then pulls the forecast
    towards the truth like a weighted MAE instead of also pushing |forecast| up to shrink the ratio."""
    return smape_terms(pred, true, detach_denominator=True).mean()


def mape(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return ape_terms(pred, true).mean()


def mase_scale(x: torch.Tensor, seasonality: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample (and variable): mean |x_t - x_{t-m}| over the input window, padded steps excluded.
    x [B, L, N] -> [B, 1, N]."""
    m = min(seasonality, x.shape[1] - 1)
    diffs = (x[:, m:] - x[:, :-m]).abs()
    if mask is None:
        return diffs.mean(dim=1, keepdim=True)
    valid = (mask[:, m:] * mask[:, :-m]).unsqueeze(-1).to(diffs.dtype)
    return (diffs * valid).sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True).clamp(min=1)


def mase(pred: torch.Tensor, true: torch.Tensor, x: torch.Tensor, seasonality: int,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    scale = mase_scale(x.to(pred.dtype), seasonality, mask)
    return safe_ratio((pred - true).abs(), scale.expand_as(pred)).mean()


def build_loss(name: str, seasonality: int = 1) -> Loss:
    """The criterion `train_step` calls as loss(forecast, batch)."""
    if name == "MSE":
        return lambda pred, batch: F.mse_loss(pred, batch["y"])
    if name == "MAE":
        return lambda pred, batch: F.l1_loss(pred, batch["y"])
    if name == "SMAPE":
        return lambda pred, batch: smape(pred, batch["y"])
    if name == "MAPE":
        return lambda pred, batch: mape(pred, batch["y"])
    if name == "MASE":
        return lambda pred, batch: mase(pred, batch["y"], batch["x"][..., -pred.shape[-1]:], seasonality,
                                        batch.get("x_mask"))
    raise ValueError(f"unknown loss {name}")
