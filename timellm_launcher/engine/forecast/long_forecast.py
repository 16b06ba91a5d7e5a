"""Forecasts of a long-format run (`--data long`): a frame of many series in, neuralforecast's layout out
(`unique_id, ds, TimeLLM` plus `TimeLLM-lo-80` style interval columns; a backtest adds `cutoff` and the truth).

Each series is scaled with the scaler of its own training part when the run saw its id, else with the mean and
standard deviation of the history given for it (every point it has is then its training part). Windows of all series
are cut from one array and forecast a batch at a time, as training cut them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.long_format import Panel, panel_from_frame, read_long, scaled_values, train_scaler
from timellm_launcher.data_provider.seasonality import is_frequency, offset
from timellm_launcher.data_provider.windows import PanelWindowDataset, concat_ranges
from timellm_launcher.engine.evaluate.baselines import last_value, seasonal_naive
from timellm_launcher.engine.evaluate.intervals import CoverageCounter, column_name, input_spread
from timellm_launcher.engine.evaluate.metrics import MetricAccumulator

if TYPE_CHECKING:
    from timellm_launcher.engine.forecast.forecaster import Forecaster


@dataclass(frozen=True)
class LongLayout:
    """How a long-format run read its file (results.json data.input) and each series' training-part scaler."""

    id_col: str
    time_col: str
    target: str
    freq: str
    season_length: int
    fillna: str
    test_size: int
    scalers: dict[str, tuple[float, float]]  # id -> (mean, std)

    @classmethod
    def of(cls, record: dict[str, Any]) -> LongLayout:
        series = record["series"]
        scalers = dict(zip(series["ids"], zip(series["mean"], series["std"], strict=True), strict=True))
        return cls(record["id_col"], record["time_col"], record["target"], record["freq"], record["season_length"],
                   record["fillna"], record["test_size"], scalers)


def check_long_record(require, lay: dict[str, Any]) -> None:
    """The fields a long-format forecast reads, each checked (results.json is a shared, editable file)."""
    for name in ("id_col", "time_col", "target", "freq", "fillna"):
        require(f"data.input.{name}", isinstance(lay.get(name), str), "a string", lay.get(name))
    require("data.input.fillna", lay["fillna"] in ("none", "ffill", "zero"), "none, ffill or zero", lay["fillna"])
    require("data.input.freq", is_frequency(lay["freq"]), "a pandas frequency (h, D, 15min, MS, ...)", lay["freq"])
    for name in ("season_length", "test_size"):
        value = lay.get(name)
        require(f"data.input.{name}", isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                "an integer >= 0", value)
    series = lay.get("series")
    ok = isinstance(series, dict) and isinstance(series.get("ids"), list) and all(
        isinstance(series.get(k), list) and len(series[k]) == len(series["ids"]) for k in ("mean", "std"))
    require("data.input.series", ok, "{ids: [...], mean: [...], std: [...]} of equal lengths", series)
    numbers = np.asarray(series["mean"] + series["std"], dtype=object)
    require("data.input.series", all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                                     for v in numbers) and all(v > 0 for v in series["std"]),
            "finite means and positive standard deviations", "...")


def read_panel(forecaster: Forecaster, frame: pd.DataFrame | Path, name: str | Path,
               fillna: str | None = None) -> Panel:
    """A frame (or a CSV/parquet file) in the run's long layout."""
    lay = forecaster.layout
    options = {"id_col": lay.id_col, "time_col": lay.time_col, "target": lay.target, "fillna": fillna or lay.fillna}
    if isinstance(frame, Path):
        return read_long(frame, **options)
    return panel_from_frame(frame, name, **options)


def scalers(forecaster: Forecaster, panel: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each series' (mean, std): the run's when it trained on the id, else from the history given; and which series
    were new to it."""
    known = forecaster.layout.scalers
    found = np.array([known.get(str(i), (np.nan, np.nan)) for i in panel.ids], dtype=np.float64).reshape(-1, 2)
    new = np.isnan(found[:, 0])
    if new.any():  # all their history is their training part
        mean, std = train_scaler(panel, 0, 0)
        found[new, 0], found[new, 1] = mean[new], std[new]
    return found[:, 0], found[:, 1], new


def future_dates(last: pd.DatetimeIndex, freq: str, steps: int) -> np.ndarray:
    """[series, steps] timestamps continuing each series' last date (a loop over steps, never over series)."""
    step = offset(freq)
    return np.stack([(last + k * step).to_numpy() for k in range(1, steps + 1)], axis=1)


class LongForecast:
    """Forecasts of every series of a panel: `future(h)` after each series, or `backtest(...)` over its windows."""

    def __init__(self, forecaster: Forecaster, panel: Panel, name: str | Path) -> None:
        cfg = forecaster.cfg
        self.forecaster, self.name, self.notes = forecaster, name, list(panel.notes)
        short = panel.lengths < cfg.seq_len
        if short.all():
            raise UserError(f"{name}: every series is shorter than the {cfg.seq_len} points the model reads "
                            "(seq_len)")
        if short.any():
            self.notes.append(f"{name}: skipped {int(short.sum()):,} of {len(panel.ids):,} series shorter than "
                              f"seq_len {cfg.seq_len}")
            panel = panel.select(~short)
        self.panel = panel
        self.mean, self.std, self.new = scalers(forecaster, panel)
        if self.new.any():
            self.notes.append(f"{name}: {int(self.new.sum()):,} series the run never trained on, scaled by their own "
                              "history")
        self.values = torch.from_numpy(scaled_values(panel, self.mean, self.std, name))
        self.model_column = cfg.model

    def _dataset(self, starts: np.ndarray, series: np.ndarray) -> PanelWindowDataset:
        return PanelWindowDataset(self.values, starts, series, self.forecaster.cfg.seq_len, 0)

    def _batches(self, dataset: PanelWindowDataset) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """(window indices, {x, pred, spread}) a batch at a time; pred and spread scaled."""
        f, pred_len = self.forecaster, self.forecaster.cfg.pred_len
        for begin in range(0, len(dataset), f.batch_size):
            index = np.arange(begin, min(begin + f.batch_size, len(dataset)))
            x = dataset.__getitems__(index.tolist())["x"]
            pred = f._forecast({"x": x, "y": torch.empty(len(x), pred_len, 1)})
            yield index, {"x": x, "pred": pred, "spread": input_spread(x, 1)}

    def _add_columns(self, out: pd.DataFrame, pred: np.ndarray, spread: np.ndarray, std: np.ndarray,
                     steps: np.ndarray) -> None:
        """The forecast in data units and, per level, its interval: the level's score quantile at each row's step x
        (its window's input spread + floor) x its series' scale (engine/evaluate/intervals.py)."""
        f, column = self.forecaster, self.model_column
        out[column] = pred
        if not f.half_widths:
            return
        scale = (spread + f.calibration["floor"]) * std
        for level, widths in sorted(f.half_widths.items(), key=lambda item: int(item[0])):
            half = widths[steps - 1] * scale
            out[column_name(column, int(level), "lo")] = pred - half
            out[column_name(column, int(level), "hi")] = pred + half

    def future(self, h: int | None = None) -> pd.DataFrame:
        """The next h (default pred_len) steps after every series."""
        cfg, lay, panel = self.forecaster.cfg, self.forecaster.layout, self.panel
        h = h or cfg.pred_len
        ends = panel.offsets[1:]
        dataset = self._dataset(ends - cfg.seq_len, np.arange(len(panel.ids)))
        chunks = []
        for index, got in self._batches(dataset):
            pred = got["pred"][:, :h, 0].double().numpy() * self.std[index, None] + self.mean[index, None]
            steps = np.tile(np.arange(1, h + 1), len(index))
            chunk = pd.DataFrame({lay.id_col: np.repeat(panel.ids[index], h),
                                  lay.time_col: future_dates(panel.last_dates()[index], lay.freq, h).ravel()})
            self._add_columns(chunk, pred.ravel(), np.repeat(got["spread"][:, 0, 0].numpy(), h),
                              np.repeat(self.std[index], h), steps)
            chunks.append(chunk)
        out = pd.concat(chunks, ignore_index=True)
        out.attrs["notes"] = self.notes
        return out

    def backtest(self, n_windows: int = 0, step_size: int = 1, test_only: bool = False) -> LongBacktest:
        return LongBacktest(self, n_windows, step_size, test_only)


class LongBacktest:
    """Each series' windows beside their truth, streamed as DataFrame chunks (unique_id, ds, cutoff, y, forecast,
    intervals); `.metrics` holds the scores once the iteration is done: scaled over all series, the baselines on the
    same windows, the intervals' coverage, and each series' MSE/MAE in its own units."""

    def __init__(self, source: LongForecast, n_windows: int, step_size: int, test_only: bool) -> None:
        cfg = source.forecaster.cfg
        if n_windows < 0 or step_size < 1:
            raise UserError(f"--n_windows must be >= 0 and --step_size >= 1, got {n_windows} and {step_size}")
        panel, window = source.panel, cfg.seq_len + cfg.pred_len
        last = panel.offsets[1:] - window  # each series' last complete window
        first = panel.offsets[:-1]
        if test_only:  # the run's held-out test targets: the last test_size points of each series it trained on
            first = np.maximum(first, panel.offsets[1:] - source.forecaster.layout.test_size - cfg.seq_len)
        counts = np.where(last >= first, (last - first) // step_size + 1, 0)
        if test_only:
            counts[source.new] = 0
        if n_windows:
            counts = np.minimum(counts, n_windows)
        if not counts.any():
            raise UserError(f"{source.name}: no series has a complete window (seq_len + pred_len = {window} points) "
                            "to roll over")
        series = np.repeat(np.arange(len(panel.ids)), counts)
        back = concat_ranges(np.zeros(len(counts), dtype=np.int64), counts)
        self.starts = last[series] - step_size * (counts[series] - 1 - back)
        self.series, self.source = series, source
        self.metrics: dict[str, Any] = {}

    def __iter__(self) -> Iterator[pd.DataFrame]:
        src = self.source
        f, lay, cfg, panel = src.forecaster, src.forecaster.layout, src.forecaster.cfg, src.panel
        pred_len, steps = cfg.pred_len, np.arange(1, cfg.pred_len + 1)
        season = lay.season_length
        use_seasonal = 1 < season <= cfg.seq_len
        scaled = MetricAccumulator()
        baselines = {n: MetricAccumulator() for n in ("last_value", *(["seasonal_naive"] if use_seasonal else []))}
        coverage = CoverageCounter(f.calibration, torch.device("cpu")) if f.half_widths else None
        per_series = np.zeros((3, len(panel.ids)))  # windows, sum |error|, sum error^2 (data units)
        dataset = PanelWindowDataset(src.values, self.starts, self.series, cfg.seq_len, pred_len)
        for begin in range(0, len(dataset), f.batch_size):
            index = np.arange(begin, min(begin + f.batch_size, len(dataset)))
            batch = dataset.__getitems__(index.tolist())
            pred = f._forecast(batch).double()
            truth, x = batch["y"].double(), batch["x"]
            spread = input_spread(x, 1)
            scaled.update(pred, truth)
            if coverage is not None:
                coverage.update(pred, truth, spread.double())
            baselines["last_value"].update(last_value(x, pred_len).double(), truth)
            if use_seasonal:
                baselines["seasonal_naive"].update(seasonal_naive(x, pred_len, season).double(), truth)
            series, starts = self.series[index], self.starts[index]
            rows = starts[:, None] + cfg.seq_len + steps[None, :] - 1
            truth_data = panel.values[rows]  # the file's own values, not a round trip through float32
            pred_data = pred[..., 0].numpy() * src.std[series, None] + src.mean[series, None]
            error = pred_data - truth_data
            np.add.at(per_series, (slice(None), series), np.stack([np.ones(len(series)), np.abs(error).sum(1),
                                                                  (error ** 2).sum(1)]))
            chunk = pd.DataFrame({lay.id_col: np.repeat(panel.ids[series], pred_len),
                                  lay.time_col: panel.dates[rows.ravel()],
                                  "cutoff": np.repeat(panel.dates[starts + cfg.seq_len - 1], pred_len),
                                  lay.target: truth_data.ravel()})
            src._add_columns(chunk, pred_data.ravel(), np.repeat(spread[:, 0, 0].numpy(), pred_len),
                             np.repeat(src.std[series], pred_len), np.tile(steps, len(index)))
            yield chunk
        overall = scaled.compute()
        scored = np.flatnonzero(per_series[0])
        values = per_series[0, scored] * pred_len
        self.metrics = {
            "windows": len(dataset), "series": len(scored), "mse": overall["mse"], "mae": overall["mae"],
            "baselines": {n: {**acc.compute(), "samples": acc.samples} for n, acc in baselines.items()},
            "coverage": {k: v["coverage"] for k, v in coverage.compute().items()} if coverage else {},
            "per_series": {"unique_id": [str(i) for i in panel.ids[scored]],
                           "windows": per_series[0, scored].astype(int).tolist(),
                           "mse_data": (per_series[2, scored] / values).tolist(),
                           "mae_data": (per_series[1, scored] / values).tolist()},
            "notes": src.notes,
        }
