"""Forecast metrics on the scaled data (as the literature reports them), accumulated batch by batch on device."""

from __future__ import annotations

import math

import numpy as np
import torch


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den is 0 (the Time-Series-Library's divide_no_nan)."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, 1.0), torch.zeros_like(num))


def smape_terms(pred: torch.Tensor, true: torch.Tensor, *, detach_denominator: bool = False) -> torch.Tensor:
    """Per element 200 |pred - true| / (|pred| + |true|): the M4 competition's sMAPE before averaging."""
    magnitude = pred.detach().abs() if detach_denominator else pred.abs()
    return 200.0 * safe_ratio((pred - true).abs(), magnitude + true.abs())


def ape_terms(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per element 100 |pred - true| / |true|: MAPE before averaging (0 where the truth is 0)."""
    return 100.0 * safe_ratio((pred - true).abs(), true.abs())


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
        sym = smape_terms(pred, true)
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


class SeriesScores:
    """Per-series MSE and MAE of a long-format split (an observer of the evaluation loop): the errors of each window
    summed into its series on the device, the window's series read from the dataset by its position (evaluation
    batches arrive in dataset order)."""

    def __init__(self, series: torch.Tensor, ids: list[str] | np.ndarray, std: np.ndarray,
                 device: torch.device) -> None:
        self.series, self.ids, self.std = series.to(device), ids, np.asarray(std, dtype=np.float64)
        # per series: [windows, values, sum |error|, sum error^2]
        self.sums = torch.zeros(4, len(ids), dtype=torch.float64, device=device)
        self.seen = 0

    def update(self, pred: torch.Tensor, true: torch.Tensor, _spread: torch.Tensor | None = None) -> None:
        owner = self.series[self.seen:self.seen + len(pred)]
        self.seen += len(pred)
        err = (pred.double() - true.double()).flatten(1)
        per_window = torch.stack([torch.ones_like(err[:, 0]), torch.full_like(err[:, 0], err.shape[1]),
                                  err.abs().sum(1), (err * err).sum(1)])
        self.sums.index_add_(1, owner, per_window)

    def compute(self) -> dict[str, list]:
        """Column lists over the series scored: id, windows, mse/mae scaled and in the series' own units."""
        windows, count, abs_sum, sq_sum = self.sums.cpu().numpy()
        scored = np.flatnonzero(windows > 0)
        mse, mae = sq_sum[scored] / count[scored], abs_sum[scored] / count[scored]
        std = self.std[scored]
        return {"unique_id": [str(self.ids[i]) for i in scored], "windows": windows[scored].astype(int).tolist(),
                "mse": mse.tolist(), "mae": mae.tolist(),
                "mse_data": (mse * std ** 2).tolist(), "mae_data": (mae * std).tolist()}
