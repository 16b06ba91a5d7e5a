"""The evaluation loop every score goes through: validation, test, M4 and the estimator's timing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from engine.evaluate.metrics import MetricAccumulator
from models.attention import eval_attention


def bar_disabled(accelerator: Accelerator) -> bool | None:
    """Progress bars on the main process only, and (None) only when stderr is a terminal."""
    return True if not accelerator.is_local_main_process else None


def forecast(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Model output aligned with the batch target (MS scores the last variable only)."""
    return model(batch["x"])[..., -batch["y"].shape[-1]:].float()


def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], accelerator: Accelerator, desc: str, *,
             keep_forecasts: bool = False) -> dict[str, Any]:
    """Exact metrics over every sample (gather_for_metrics drops the padding added to shard evenly); with
    keep_forecasts the gathered forecasts too, in loader order (key "forecasts")."""
    model.eval()
    scores, kept = MetricAccumulator(), []
    with torch.inference_mode(), eval_attention():
        for batch in tqdm(batches, desc=desc, leave=False, disable=bar_disabled(accelerator)):
            pred, true = accelerator.gather_for_metrics((forecast(model, batch), batch["y"]))
            scores.update(pred, true)
            if keep_forecasts:
                kept.append(pred.cpu())
    result: dict[str, Any] = {**scores.compute(), "samples": scores.samples}
    if keep_forecasts:
        result["forecasts"] = torch.cat(kept)
    return result
