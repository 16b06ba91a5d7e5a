"""M4 evaluation: SMAPE, MAPE, MASE per series, the Naive2 benchmark, OWA, and the six-pattern summary.

Definitions of the M4 competition (Makridakis et al., 2020):
- sMAPE = 200/h * sum |y - f| / (|y| + |f|), MAPE = 100/h * sum |y - f| / |y| (0/0 counts as 0);
- MASE = mean |y - f| / mean_t |x_t - x_{t-m}| over the series' whole history, m its seasonality;
- Naive2 = the last value of the seasonally adjusted history, re-seasonalised: the history is adjusted by
  classical multiplicative decomposition when m > 1, the history has at least 3m values and the lag-m
  autocorrelation passes the 90% test |r_m| > 1.645 * sqrt((1 + 2 * s) / n) with s = r_1^2 + ... + r_{m-1}^2
  (Bartlett's variance, as the competition's R benchmarks compute it; its Python port leaves r_1 unsquared);
- OWA = (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2, each averaged over the series of a group.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from timellm_launcher.data_provider.m4 import PATTERNS
from timellm_launcher.engine.evaluate.metrics import ape_terms, smape_terms

PATTERN_ORDER = tuple(PATTERNS)  # the order M4 results are reported in
OTHERS = ("Weekly", "Daily", "Hourly")


def _per_series(terms, forecast: np.ndarray, actual: np.ndarray) -> np.ndarray:
    pred, true = (torch.as_tensor(a, dtype=torch.float64) for a in (forecast, actual))
    return terms(pred, true).mean(dim=1).numpy()


def smape_per_series(forecast: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return _per_series(smape_terms, forecast, actual)


def mape_per_series(forecast: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return _per_series(ape_terms, forecast, actual)


def mase_per_series(forecast: np.ndarray, actual: np.ndarray, histories: list[np.ndarray],
                    seasonality: int) -> np.ndarray:
    out = np.empty(len(histories))
    for i, history in enumerate(histories):
        m = seasonality if len(history) > seasonality else 1
        scale = np.mean(np.abs(history[m:] - history[:-m])) if len(history) > m else 0.0
        error = np.mean(np.abs(actual[i] - forecast[i]))
        out[i] = error / scale if scale > 0 else 0.0
    return out


def autocorrelation(x: np.ndarray, lag: int) -> float:
    centred = x - x.mean()
    denom = float(np.sum(centred * centred))
    return float(np.sum(centred[lag:] * centred[:-lag])) / denom if denom > 0 else 0.0


def is_seasonal(history: np.ndarray, seasonality: int) -> bool:
    """The competition's 90% autocorrelation test at lag m."""
    if seasonality <= 1 or len(history) < 3 * seasonality:
        return False
    s = sum(autocorrelation(history, k) ** 2 for k in range(1, seasonality))
    limit = 1.645 * math.sqrt((1 + 2 * s) / len(history))
    return abs(autocorrelation(history, seasonality)) > limit


def seasonal_indices(history: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition: the ratio of the history to its centred moving average
    (2 x m for even m), averaged per position in the cycle and normalised to mean 1. Index k belongs to
    positions t with t % m == k."""
    if m % 2 == 0:
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        weights = np.ones(m) / m
    half = len(weights) // 2
    trend = np.full(len(history), np.nan)
    trend[half:len(history) - half] = np.convolve(history, weights, mode="valid")
    ratio = history / trend
    indices = np.array([np.nanmean(ratio[k::m]) for k in range(m)])
    return indices / indices.mean()


def naive2(history: np.ndarray, horizon: int, seasonality: int) -> np.ndarray:
    if not is_seasonal(history, seasonality):
        return np.full(horizon, history[-1])
    indices = seasonal_indices(history, seasonality)
    n = len(history)
    adjusted_last = history[-1] / indices[(n - 1) % seasonality]
    return adjusted_last * indices[(n + np.arange(horizon)) % seasonality]


def score_pattern(forecast: np.ndarray, actual: np.ndarray, histories: list[np.ndarray],
                  seasonality: int, benchmark: np.ndarray | None = None) -> dict[str, float]:
    """The M4 scores of one pattern, with the Naive2 scores the OWA needs (means over its series); `benchmark`:
    the official Naive2 forecasts, else computed here."""
    if benchmark is None:
        benchmark = np.stack([naive2(h, actual.shape[1], seasonality) for h in histories])
    scores = {
        "series": int(len(histories)),
        "smape": float(smape_per_series(forecast, actual).mean()),
        "mape": float(mape_per_series(forecast, actual).mean()),
        "mase": float(mase_per_series(forecast, actual, histories, seasonality).mean()),
        "naive2_smape": float(smape_per_series(benchmark, actual).mean()),
        "naive2_mase": float(mase_per_series(benchmark, actual, histories, seasonality).mean()),
    }
    scores["owa"] = owa(scores["smape"], scores["mase"], scores["naive2_smape"], scores["naive2_mase"])
    return scores


def owa(smape: float, mase: float, naive2_smape: float, naive2_mase: float) -> float:
    if naive2_smape <= 0 or naive2_mase <= 0:
        return float("nan")
    return 0.5 * (smape / naive2_smape + mase / naive2_mase)


def _pool(parts: list[dict[str, float]]) -> dict[str, float]:
    """Means over the series of several patterns (weights: series counts), then the group's OWA."""
    total = sum(p["series"] for p in parts)
    pooled = {"series": total}
    for key in ("smape", "mape", "mase", "naive2_smape", "naive2_mase"):
        pooled[key] = sum(p[key] * p["series"] for p in parts) / total
    pooled["owa"] = owa(pooled["smape"], pooled["mase"], pooled["naive2_smape"], pooled["naive2_mase"])
    return pooled


def summarize_patterns(by_pattern: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Rows of the usual M4 table: each pattern present; with all six, also Others (weekly, daily, hourly
    pooled) and Average (all 100,000 series pooled)."""
    rows = {p: by_pattern[p] for p in PATTERN_ORDER if p in by_pattern}
    if all(p in by_pattern for p in PATTERN_ORDER):
        rows["Others"] = _pool([by_pattern[p] for p in OTHERS])
        rows["Average"] = _pool([by_pattern[p] for p in PATTERN_ORDER])
    return rows
