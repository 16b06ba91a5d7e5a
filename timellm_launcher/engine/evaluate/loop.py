"""The evaluation loop every score goes through: validation, test, M4 and the estimator's timing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from timellm_launcher.data_provider.m4 import M4Data
from timellm_launcher.engine.evaluate.intervals import input_spread
from timellm_launcher.engine.evaluate.m4_metrics import score_pattern
from timellm_launcher.engine.evaluate.metrics import MetricAccumulator
from timellm_launcher.engine.progress import progress
from timellm_launcher.models.attention import eval_attention


def forecast(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Model output aligned with the batch target (MS scores the last variable only)."""
    return model(batch["x"])[..., -batch["y"].shape[-1]:].float()


def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], accelerator: Accelerator, desc: str, *,
             keep_forecasts: bool = False, observers: Iterable[Any] = ()) -> dict[str, Any]:
    """Exact metrics over every sample (gather_for_metrics drops the padding added to shard evenly); with
    keep_forecasts the gathered forecasts too, in loader order (key "forecasts"). Each observer's
    update(pred, true, spread) sees every gathered batch with its input windows' spread (the intervals' residuals
    and coverage, engine/evaluate/intervals.py)."""
    observers = list(observers)
    model.eval()
    scores, kept = MetricAccumulator(), []
    with torch.inference_mode(), eval_attention():
        for batch in progress(batches, desc=desc, show=accelerator.is_local_main_process, unit="batch"):
            if observers:
                spread = input_spread(batch["x"], batch["y"].shape[-1])
                pred, true, spread = accelerator.gather_for_metrics((forecast(model, batch), batch["y"], spread))
                for observer in observers:
                    observer.update(pred, true, spread)
            else:
                pred, true = accelerator.gather_for_metrics((forecast(model, batch), batch["y"]))
            scores.update(pred, true)
            if keep_forecasts:
                kept.append(pred.cpu())
    result: dict[str, Any] = {**scores.compute(), "samples": scores.samples}
    if keep_forecasts:
        result["forecasts"] = torch.cat(kept)
    return result


def evaluate_short_term(model: nn.Module, loader: DataLoader, accelerator: Accelerator, data: M4Data) -> dict:
    """MSE/MAE (raw scale) plus sMAPE, MAPE, MASE, OWA and the Naive2 scores of this pattern. The test loader
    is not shuffled and gather_for_metrics keeps batch order, so row i is series i."""
    scores = evaluate(model, loader, accelerator, "test", keep_forecasts=True)
    predictions = scores.pop("forecasts")[..., 0].double().numpy()
    actual = np.stack(data.test_series)
    if predictions.shape != actual.shape:
        raise RuntimeError(f"gathered {predictions.shape} forecasts for {actual.shape} test horizons")
    return {**scores, **score_pattern(predictions, actual, data.train_series, data.seasonality, data.naive2)}
