"""Forecast metrics on the scaled data (as the literature reports them), accumulated batch by batch on device."""

from __future__ import annotations

import math

import torch


class MetricAccumulator:
    """Running sums in float64, so the test set is scored exactly without keeping every forecast.

    MAPE/MSPE skip targets that are exactly zero (the ratio is undefined there); sMAPE counts 0/0 as 0.
    """

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None  # [values, abs, sq, nonzero values, abs_pct, sq_pct, smape]
        self.samples = 0  # forecast windows scored

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        pred, true = pred.double(), true.double()
        err = pred - true
        nonzero = true != 0
        pct = torch.where(nonzero, err / torch.where(nonzero, true, 1.0), 0.0)
        den = pred.abs() + true.abs()
        sym = torch.where(den != 0, 200.0 * err.abs() / torch.where(den != 0, den, 1.0), 0.0)
        batch = torch.stack([torch.tensor(float(err.numel()), dtype=torch.float64, device=err.device),
                             err.abs().sum(), (err * err).sum(), nonzero.sum().double(),
                             pct.abs().sum(), (pct * pct).sum(), sym.sum()])
        self.sums = batch if self.sums is None else self.sums + batch
        self.samples += pred.shape[0]

    def compute(self) -> dict[str, float]:
        if self.sums is None or self.sums[0] == 0:
            raise ValueError("no samples were scored")
        n, abs_sum, sq_sum, n_pct, abs_pct, sq_pct, sym_sum = self.sums.tolist()
        mse = sq_sum / n
        return {"mse": mse, "mae": abs_sum / n, "rmse": math.sqrt(mse),
                "mape": abs_pct / n_pct if n_pct else float("nan"),
                "mspe": sq_pct / n_pct if n_pct else float("nan"), "smape": sym_sum / n}
