"""Rolling-origin backtests of a trained run, streamed: windows are forecast a batch at a time and each batch comes
out as a long DataFrame chunk, so memory is bounded by the batch, not by the file (forecast.py writes the chunks as
they come; Forecaster.predict(rolling=True) concatenates them).

Windows: every `step_size`-th forecast origin, counted back from the file's last complete window, the last
`n_windows` of them (0: all), never one whose input starts before `first_row` (forecast.py --test_only: the run's
test rows). Scores: MSE/MAE on the scaled data (as results.json reports them), per variable in data units (pooling
variables of different scales in data units would mean nothing), the simple baselines on the same windows, and the
intervals' coverage when the run has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.csv_loader import Series
from timellm_launcher.engine.evaluate.baselines import last_value, seasonal_naive
from timellm_launcher.engine.evaluate.intervals import CoverageCounter, input_spread
from timellm_launcher.engine.evaluate.metrics import MetricAccumulator

if TYPE_CHECKING:
    from timellm_launcher.engine.forecast.forecaster import Forecaster


def window_starts(total: int, n_windows: int, step_size: int, first: int = 0) -> np.ndarray:
    """Start rows of the windows scored: every step_size-th from the last one back to `first`, the last n_windows."""
    starts = np.arange(total - 1, first - 1, -step_size)[::-1]
    return starts[-n_windows:] if n_windows else starts


class Backtest:
    """Iterate for the DataFrame chunks (cutoff, date, step, truth and forecast per variable, interval columns);
    `.metrics` holds the scores once the iteration is done."""

    def __init__(self, forecaster: Forecaster, series: Series, *, name: str | Path, n_windows: int, step_size: int,
                 first_row: int = 0) -> None:
        cfg = forecaster.cfg
        if n_windows < 0 or step_size < 1:
            raise UserError(f"--n_windows must be >= 0 and --step_size >= 1, got {n_windows} and {step_size}")
        usable = len(series.values) - first_row
        if usable < cfg.seq_len + cfg.pred_len:
            raise UserError(f"{name}: {usable} rows to roll over; --rolling needs at least seq_len + pred_len = "
                            f"{cfg.seq_len + cfg.pred_len} (a window to read and one to score)")
        forecaster._check_step(series, first_row, name)
        self.forecaster, self.series, self.name = forecaster, series, name
        self.dataset = forecaster._dataset(forecaster._scaled(series, name))
        self.starts = window_starts(self.dataset.n_windows, n_windows, step_size, first_row)
        self.metrics: dict[str, Any] = {}

    def __iter__(self) -> Iterator[pd.DataFrame]:
        f, lay, cfg = self.forecaster, self.forecaster.layout, self.forecaster.cfg
        outputs, order, scales = lay.outputs, f._output_index(), f._scales()
        season = lay.season_length
        use_seasonal = 1 < season <= cfg.seq_len
        scaled = MetricAccumulator()
        per_variable = {c: MetricAccumulator() for c in outputs}
        baselines = {n: MetricAccumulator() for n in ("last_value", *(["seasonal_naive"] if use_seasonal else []))}
        coverage = CoverageCounter(f.calibration, torch.device("cpu")) if f.half_widths else None
        per_batch = max(1, f.batch_size // (self.dataset.n_vars if self.dataset.channel_independent else 1))
        steps = np.arange(1, cfg.pred_len + 1)
        for begin in range(0, len(self.starts), per_batch):
            starts = self.starts[begin:begin + per_batch]
            got = f._window_forecasts(self.dataset, starts)
            pred, truth = got["pred"].double(), got["y"].double()
            scored = truth.shape[-1]
            spread = input_spread(got["x"], scored)  # [windows, 1, outputs in model order]
            scaled.update(pred, truth)
            if coverage is not None:
                coverage.update(pred, truth, spread.double())
            baselines["last_value"].update(last_value(got["x"], cfg.pred_len)[..., -scored:].double(), truth)
            if use_seasonal:
                baselines["seasonal_naive"].update(
                    seasonal_naive(got["x"], cfg.pred_len, season)[..., -scored:].double(), truth)
            rows = starts[:, None] + cfg.seq_len + steps[None, :] - 1  # [windows, pred_len]
            truth_data = self.series.values[rows]  # the file's own values, not a round trip through float32
            truth_data = truth_data[..., -1:] if lay.features == "MS" else truth_data
            pred_data = f._unscale(pred.numpy())
            chunk = pd.DataFrame({"cutoff": np.repeat(self.series.dates[starts + cfg.seq_len - 1], cfg.pred_len),
                                  lay.date_column: self.series.dates[rows.ravel()],
                                  "step": np.tile(steps, len(starts))})
            for position, column in zip(order, outputs, strict=True):
                chunk[column] = truth_data[..., position].ravel()
                chunk[f"{column}_forecast"] = pred_data[..., position].ravel()
                per_variable[column].update(torch.from_numpy(pred_data[..., position]),
                                            torch.from_numpy(truth_data[..., position]))
            f._add_intervals(chunk, {f"{c}_forecast": chunk[f"{c}_forecast"].to_numpy() for c in outputs},
                             chunk["step"].to_numpy(), np.repeat(spread.numpy()[:, 0, order], cfg.pred_len, axis=0))
            yield chunk
        overall = scaled.compute()
        self.metrics = {
            "windows": len(self.starts), "mse": overall["mse"], "mae": overall["mae"],
            "data_units": {c: {k: v for k, v in acc.compute().items() if k in ("mse", "mae", "rmse")} | {
                "scale": float(s)} for (c, acc), s in zip(per_variable.items(), scales, strict=True)},
            "baselines": {n: {**acc.compute(), "samples": acc.samples} for n, acc in baselines.items()},
            "coverage": {k: v["coverage"] for k, v in coverage.compute().items()} if coverage else {},
        }
