"""The simple forecasts every run is scored beside: last value, seasonal naive, and a least-squares linear map.

They see exactly the windows the model is scored on (the validation and test datasets), in the same scaled units,
and go through the same MetricAccumulator, so a model's skill over them is a like-for-like comparison:
- `last_value`: the last input value repeated over the horizon;
- `seasonal_naive`: the last full season repeated (season from the data's sampling step, or --season_length);
- `linear`: one map from the seq_len inputs (plus an intercept) to the pred_len outputs, shared by every
  variable (channel-independent), fit in closed form with a small ridge on the training windows only.

The linear fit needs the Gram matrix of all training windows. A window matrix is a Hankel matrix, so each entry
is a sum of lagged products of the series over a range of rows: with one prefix sum per lag the Gram matrix costs
O(rows x window) per variable instead of O(windows x window^2); in long format each series' run of windows is
one difference of the same prefix sums, so series never mix and no Python loop runs over them.
"""

from __future__ import annotations

import numpy as np
import torch

from timellm_launcher.engine.evaluate.metrics import MetricAccumulator

RIDGE = 1e-3  # per training window: minimises mean squared error + RIDGE * ||weights||^2
NAMES = ("last_value", "seasonal_naive", "linear")
LABELS = {"last_value": "last value", "seasonal_naive": "seasonal naive", "linear": "linear", "naive2": "Naive2"}


def window_gram(series: np.ndarray, width: int, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray, int]:
    """Sums of w w^T and of w over the windows w = series[t:t+width] for t in each run [starts_k, starts_k +
    counts_k), and the window count (float64): one run for a wide column, one per series in long format."""
    z = np.asarray(series, dtype=np.float64)
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(starts, dtype=np.int64) + counts
    gram = np.empty((width, width))
    for lag in range(width):
        products = np.concatenate([[0.0], np.cumsum(z[:len(z) - lag] * z[lag:])])
        offsets = np.arange(width - lag)
        gram[offsets, offsets + lag] = (products[ends[:, None] + offsets] - products[starts[:, None] + offsets]).sum(0)
        gram[offsets + lag, offsets] = gram[offsets, offsets + lag]
    prefix = np.concatenate([[0.0], np.cumsum(z)])
    offsets = np.arange(width)
    sums = (prefix[ends[:, None] + offsets] - prefix[starts[:, None] + offsets]).sum(0)
    return gram, sums, int(np.sum(counts))


def fit_linear(train, seq_len: int, pred_len: int, ridge: float = RIDGE) -> np.ndarray:
    """[seq_len + 1, pred_len] weights (the last row is the intercept) fit on every training window of `train`
    (a window dataset: its window_ranges())."""
    width = seq_len + pred_len
    gram, sums, count = np.zeros((width, width)), np.zeros(width), 0
    for series, starts, counts in train.window_ranges():
        g, s, n = window_gram(series, width, starts, counts)
        gram, sums, count = gram + g, sums + s, count + n
    # normal equations of [inputs, 1] -> outputs; the intercept is not penalised
    xx = np.zeros((seq_len + 1, seq_len + 1))
    xx[:seq_len, :seq_len] = gram[:seq_len, :seq_len] + ridge * count * np.eye(seq_len)
    xx[:seq_len, seq_len] = xx[seq_len, :seq_len] = sums[:seq_len]
    xx[seq_len, seq_len] = count
    xy = np.vstack([gram[:seq_len, seq_len:], sums[seq_len:][None, :]])
    return np.linalg.solve(xx, xy)


def seasonal_naive(x: torch.Tensor, pred_len: int, season: int) -> torch.Tensor:
    """x [B, L, N] -> [B, pred_len, N]: step h repeats x[L - season + h mod season]."""
    index = x.shape[1] - season + torch.arange(pred_len, device=x.device) % season
    return x[:, index]


def last_value(x: torch.Tensor, pred_len: int) -> torch.Tensor:
    return x[:, -1:].expand(-1, pred_len, -1)


def linear(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x [B, L, N] -> [B, pred_len, N] with the shared map applied to each variable."""
    return torch.einsum("bln,lh->bhn", x.double(), weights[:-1]) + weights[-1][None, :, None]


def score_baselines(datasets: dict, seq_len: int, pred_len: int, season: int,
                    splits: tuple[str, ...] = ("val", "test"), batch: int = 4096) -> dict[str, dict[str, dict]]:
    """{split: {baseline: metrics}} over every window of each split's dataset, the linear map fit on the train
    split's windows."""
    weights = torch.from_numpy(fit_linear(datasets["train"], seq_len, pred_len))
    return {split: score_windows(datasets[split], pred_len, season, weights, batch) for split in splits}


def score_windows(dataset, pred_len: int, season: int, weights: torch.Tensor | None = None,
                  batch: int = 4096) -> dict[str, dict]:
    """{baseline: metrics} over every window of a WindowDataset; the linear map only when its weights are given.
    The seasonal naive forecast is left out when the season is 1 (it would be the last value) or longer than the
    input window."""
    names = [n for n in NAMES if (n != "seasonal_naive" or 1 < season <= dataset.seq_len)
             and (n != "linear" or weights is not None)]
    accumulators = {name: MetricAccumulator() for name in names}
    for start in range(0, len(dataset), batch):
        windows = dataset.__getitems__(list(range(start, min(start + batch, len(dataset)))))
        x, y = windows["x"], windows["y"]
        scored = y.shape[-1]  # MS scores the target, the last variable
        forecasts = {"last_value": last_value(x, pred_len)}
        if "linear" in names:
            forecasts["linear"] = linear(x, weights)
        if "seasonal_naive" in names:
            forecasts["seasonal_naive"] = seasonal_naive(x, pred_len, season)
        for name in names:
            accumulators[name].update(forecasts[name][..., -scored:], y)
    return {name: {**acc.compute(), "samples": acc.samples} for name, acc in accumulators.items()}


def best_baseline(baselines: dict[str, dict]) -> tuple[str, dict]:
    """The baseline with the lowest MSE."""
    name = min(baselines, key=lambda n: baselines[n]["mse"])
    return name, baselines[name]


def skill(model: float, baseline: float) -> float:
    """1 - model error / baseline error: positive when the model is better."""
    return 1.0 - model / baseline if baseline > 0 else float("nan")


def m4_baseline(test: dict[str, float]) -> dict[str, dict] | None:
    """M4's benchmark, Naive2, as the competition scores it (scored with the model's own test metrics)."""
    if "naive2_smape" not in test:
        return None
    return {"naive2": {"smape": test["naive2_smape"], "mase": test["naive2_mase"], "owa": 1.0}}


def baseline_lines(split: str, model: dict[str, float] | None, baselines: dict[str, dict]) -> list[str]:
    """The summary: every baseline's MSE/MAE on the split's windows; with the model's metrics, its skill over the
    best baseline (1 - model error / baseline error) and whether it beats them all."""
    scores = " | ".join(f"{LABELS[n]} {b['mse']:.4f} / {b['mae']:.4f}"
                        for n, b in sorted(baselines.items(), key=lambda item: item[1]["mse"]))
    lines = [f"{split} baselines (mse / mae, same windows): {scores}"]
    if model is not None:
        name, best = best_baseline(baselines)
        beaten = [n for n, b in baselines.items() if model["mse"] < b["mse"] and model["mae"] < b["mae"]]
        verdict = ("beats every baseline on mse and mae" if len(beaten) == len(baselines)
                   else f"does not beat {', '.join(LABELS[n] for n in baselines if n not in beaten)}")
        lines.append(f"skill over the best baseline ({LABELS[name]}): {skill_text(model, best)}; the model {verdict}")
    return lines


def skill_text(model: dict[str, float], baseline: dict[str, float]) -> str:
    """'mse +12.3%, mae +4.5%'; a baseline that is exact on these windows (a constant series) has no skill ratio."""
    if not (baseline["mse"] > 0 and baseline["mae"] > 0):
        return "none to compute (the baseline's error is 0 on these windows: the target is constant there)"
    return f"mse {skill(model['mse'], baseline['mse']):+.1%}, mae {skill(model['mae'], baseline['mae']):+.1%}"
