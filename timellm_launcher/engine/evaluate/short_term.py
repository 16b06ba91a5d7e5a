"""Scoring the M4 test set: every series' forecast, gathered in file order, then the M4 scores."""

from __future__ import annotations

import numpy as np
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from timellm_launcher.data_provider.m4 import M4Data
from timellm_launcher.engine.evaluate.loop import evaluate
from timellm_launcher.engine.evaluate.m4_metrics import score_pattern


def evaluate_short_term(model: nn.Module, loader: DataLoader, accelerator: Accelerator, data: M4Data) -> dict:
    """MSE/MAE (raw scale) plus sMAPE, MAPE, MASE, OWA and the Naive2 scores of this pattern. The test loader
    is not shuffled and gather_for_metrics keeps batch order, so row i is series i."""
    scores = evaluate(model, loader, accelerator, "test", keep_forecasts=True)
    predictions = scores.pop("forecasts")[..., 0].double().numpy()
    actual = np.stack(data.test_series)
    if predictions.shape != actual.shape:
        raise RuntimeError(f"gathered {predictions.shape} forecasts for {actual.shape} test horizons")
    return {**scores, **score_pattern(predictions, actual, data.train_series, data.seasonality, data.naive2)}
