"""Scoring the M4 test set: every series' forecast, gathered in file order, then the M4 scores."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from data_provider.m4 import M4Data
from engine.evaluate.m4_metrics import score_pattern
from engine.evaluate.metrics import MetricAccumulator


def evaluate_short_term(model: nn.Module, loader: DataLoader, accelerator: Accelerator, data: M4Data,
                        forecast) -> dict[str, float]:
    """MSE/MAE (raw scale) plus sMAPE, MAPE, MASE, OWA and the Naive2 scores of this pattern. The test loader
    is not shuffled and gather_for_metrics keeps batch order, so row i is series i."""
    model.eval()
    acc = MetricAccumulator()
    parts = []
    with torch.inference_mode():
        for batch in loader:
            pred, true = accelerator.gather_for_metrics((forecast(model, batch), batch["y"]))
            acc.update(pred, true)
            parts.append(pred[..., 0].double().cpu())
    predictions = torch.cat(parts).numpy()
    actual = np.stack(data.test_series)
    if predictions.shape != actual.shape:
        raise RuntimeError(f"gathered {predictions.shape} forecasts for {actual.shape} test horizons")
    scores = score_pattern(predictions, actual, data.train_series, data.seasonality, data.naive2)
    return {**acc.compute(), **scores, "samples": acc.samples}
