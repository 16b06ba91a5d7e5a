"""The picture of a run: loss curves and a few test forecasts, one PNG beside results.json.

Drawn once at the end of a run on the main process (matplotlib, Agg backend: no display needed),
with the best checkpoint loaded: --plot_windows test windows of the target variable (the last column),
evenly spaced over the test split, de-scaled back to the CSV's units with the train-split scaler.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from timellm_launcher.core.files import atomic_path  # noqa: E402
from timellm_launcher.data_provider.data_factory import DataBundle  # noqa: E402

PLOT_NAME = "forecast.png"


def target_window_indices(data: DataBundle, count: int) -> list[int]:
    """Test sample indices of `count` windows of the last variable, evenly spaced in time."""
    ds = data.datasets["test"]
    if not hasattr(ds, "n_windows"):  # windows of many series (M4, long format): spread over the series
        return [int(i) for i in np.linspace(0, len(ds) - 1, num=min(count, len(ds))).round()]
    starts = np.linspace(0, ds.n_windows - 1, num=min(count, ds.n_windows)).round().astype(int)
    offset = (ds.n_vars - 1) * ds.n_windows if ds.channel_independent else 0
    return [int(offset + s) for s in starts]


def forecast_target_windows(model: torch.nn.Module, data: DataBundle, count: int,
                            accelerator: Accelerator) -> dict[str, np.ndarray]:
    """history [W, seq_len], truth and forecast [W, pred_len] of the target variable, in the data's units."""
    batch = data.datasets["test"].__getitems__(target_window_indices(data, count))
    was_training = model.training
    model.eval()
    with torch.inference_mode(), accelerator.autocast():
        prediction = model(batch["x"].to(accelerator.device)).float().cpu()
    model.train(was_training)
    if getattr(data, "series_ids", None) is not None:  # long format: each window's own series scaler
        series = data.datasets["test"].series[target_window_indices(data, count)].numpy()
        mean, std = data.mean[series, None], data.std[series, None]
    elif hasattr(data, "mean"):
        mean, std = float(data.mean[-1]), float(data.std[-1])
    else:  # M4 series are modelled in their own units
        mean, std = 0.0, 1.0

    def unscale(values: torch.Tensor) -> np.ndarray:
        return values[..., -1].numpy() * std + mean

    windows = {"history": unscale(batch["x"]), "truth": unscale(batch["y"]), "forecast": unscale(prediction)}
    if getattr(data, "series_ids", None) is not None:
        windows["labels"] = [f"series {data.series_ids[s]}" for s in series]
    return windows


def draw(path: Path, history: list[dict[str, Any]], windows: dict[str, np.ndarray], title: str,
         target: str) -> Path:
    """Loss curves on top, then one panel per window; written atomically."""
    count = len(windows["history"])
    rows = 1 + math.ceil(count / 2)
    fig = plt.figure(figsize=(12, 3.0 * rows), dpi=100)
    grid = fig.add_gridspec(rows, 2)
    ax = fig.add_subplot(grid[0, :])
    epochs = [h["epoch"] for h in history]
    if epochs:
        ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
        ax.plot(epochs, [h["val_mse"] for h in history], marker="o", label="validation MSE")
        ax.set_xticks(epochs)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no training in this run (--is_training 0)", ha="center", va="center")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled data)")
    ax.set_title(title, fontsize=9)
    for i in range(count):
        ax = fig.add_subplot(grid[1 + i // 2, i % 2])
        past, truth, pred = windows["history"][i], windows["truth"][i], windows["forecast"][i]
        t_past = np.arange(-len(past), 0)
        t_future = np.arange(len(truth))
        ax.plot(t_past, past, color="0.35", label="history")
        ax.plot(t_future, truth, color="tab:green", label="truth")
        ax.plot(t_future, pred, color="tab:red", label="forecast")
        ax.axvline(0, color="0.7", linewidth=0.8)
        ax.set_title(windows["labels"][i] if "labels" in windows else f"test window {i + 1}", fontsize=9)
        ax.set_ylabel(f"{target} (data units)")
        ax.set_xlabel("steps from the forecast origin")
        if i == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def plot_run(model: torch.nn.Module, data: DataBundle, count: int, accelerator: Accelerator, folder: Path,
             history: list[dict[str, Any]], title: str, name: str = PLOT_NAME) -> Path:
    """Forecast `count` test windows with `model` and draw them with the loss curves into folder/name."""
    folder.mkdir(parents=True, exist_ok=True)
    windows = forecast_target_windows(model, data, count, accelerator)
    return draw(folder / name, history, windows, title, data.columns[-1] if hasattr(data, "columns") else "value")


def draw_forecast(path: Path, dates: Any, history: np.ndarray, future_dates: Any, forecast: np.ndarray,
                  truth: np.ndarray | None, target: str, title: str,
                  bands: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """The target's recent history and the forecast after it (and the truth, when known), with the prediction
    intervals shaded (`bands`: level -> (lo, hi)); written atomically."""
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    for level, (lo, hi) in sorted((bands or {}).items(), reverse=True):  # the widest first, underneath
        ax.fill_between(future_dates, lo, hi, color="tab:red", alpha=0.12 + 0.1 * (level < max(bands)),
                        linewidth=0, label=f"{level}% interval")
    ax.plot(dates, history, color="0.35", label="history")
    if truth is not None:
        ax.plot(future_dates, truth, color="tab:green", label="truth")
    ax.plot(future_dates, forecast, color="tab:red", label="forecast")
    ax.axvline(future_dates[0], color="0.7", linewidth=0.8)
    ax.set_ylabel(f"{target} (data units)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
