"""Forecast new data with a trained run: pandas in, pandas out.

    forecaster = Forecaster.load("results/<run>")      # the run folder or its results.json
    future = forecaster.predict(frame)                 # the next pred_len steps after the frame's last row
    scored = forecaster.predict(frame, rolling=True)   # every window of the frame, beside the truth

The run's results.json holds everything needed to rebuild the model without its flags: the configuration, the
prompt description, the file layout (date column, variables, target), the sampling step and the train-split
scaler. The frozen backbone is reloaded from its source (for a random-initialised backbone, from the run's seed),
the trainable weights from best.safetensors, and forecasts run in the run's precision with the evaluation
kernels, a batch of windows at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate.utils import set_seed

from core.errors import UserError
from data_provider.csv_loader import Series, row_label, series_from_frame
from data_provider.data_factory import standardise
from data_provider.seasonality import first_off_step, future_dates
from data_provider.windows import WindowDataset
from engine.config import Config
from engine.evaluate.baselines import score_windows
from engine.evaluate.loop import forecast
from engine.evaluate.metrics import MetricAccumulator
from engine.report.results import RESULTS_FILE
from engine.runtime import configure_backends
from engine.train.accelerator import DTYPES
from engine.train.builders import build_model
from engine.train.checkpoint import load_weights
from models.attention import eval_attention
from models.time_llm import TimeLLM


def read_run(run: str | Path) -> tuple[Path, dict[str, Any]]:
    """(results.json path, its content) of a run folder or results.json, refusing runs that cannot forecast."""
    path = Path(run)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"--run {run}: no {RESULTS_FILE} there (give a run's results folder, e.g. "
                        f"results/<run>, or its {RESULTS_FILE})")
    try:
        result = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"--run {file}: not a readable {RESULTS_FILE} ({err})") from None
    if not isinstance(result, dict) or "config" not in result:
        raise UserError(f"--run {file}: not a run's {RESULTS_FILE} (no 'config')")
    if result["config"].get("task_name") == "short_term_forecast":
        raise UserError(f"--run {file}: an M4 run; forecast.py forecasts runs trained on a CSV with a date column "
                        "(score M4 checkpoints with run_main.py --is_training 0)")
    if "input" not in result.get("data", {}) or "description" not in result.get("model", {}):
        raise UserError(f"--run {file}: written before runs recorded their scaler, columns and prompt; "
                        "train it again with this version to forecast with it")
    return file, result


def find_checkpoint(file: Path, result: dict[str, Any]) -> Path:
    """best.safetensors where the run recorded it; a relative path also from the run folder's parent's parent."""
    recorded = Path(result.get("checkpoint", ""))
    candidates = [recorded]
    if not recorded.is_absolute():  # runs recorded it relative to where they were launched
        candidates.append(file.parent.parent.parent / recorded)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"--run {file.parent}: its checkpoint {recorded} is missing (the run did not finish "
                    "training, or its checkpoints folder moved)")


@dataclass(frozen=True)
class Layout:
    """How the run read its file (results.json data.input)."""

    date_column: str
    file_columns: list[str]  # variables as the file orders them
    columns: list[str]  # variables as the model reads them, target last
    target: str
    features: str
    drop_columns: list[str]
    freq: str
    regular: bool
    season_length: int
    fillna: str
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, record: dict[str, Any]) -> Layout:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        return cls(**{**values, "mean": np.asarray(record["mean"]), "std": np.asarray(record["std"])})

    @property
    def outputs(self) -> list[str]:
        """The variables the model forecasts, in the file's order."""
        return [self.target] if self.features in ("S", "MS") else self.file_columns


class Forecaster:
    """A trained run, ready to forecast frames shaped like its training file."""

    def __init__(self, model: TimeLLM, cfg: Config, layout: Layout, device: torch.device,
                 autocast_dtype: torch.dtype | None, batch_size: int) -> None:
        self.model, self.cfg, self.layout, self.device = model.eval(), cfg, layout, device
        self.autocast_dtype, self.batch_size = autocast_dtype, batch_size

    @classmethod
    def load(cls, run: str | Path, *, device: str | None = None, batch_size: int = 0) -> Forecaster:
        """Rebuild the run's model on `device` (default: cuda when available); offline unless it trained with
        --allow_download."""
        return cls.from_record(*read_run(run), device=device, batch_size=batch_size)

    @classmethod
    def from_record(cls, file: Path, result: dict[str, Any], *, device: str | None = None,
                    batch_size: int = 0) -> Forecaster:
        """The same from a results.json already read (read_run)."""
        checkpoint = find_checkpoint(file, result)
        known = {f.name for f in dataclasses.fields(Config)}
        cfg = Config(**{k: v for k, v in result["config"].items() if k in known})
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if target.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")
        precision = result.get("distributed", {}).get("mixed_precision", "no")
        dtype = DTYPES.get(precision, torch.float32)
        configure_backends(target, dtype)
        set_seed(result.get("seed", cfg.seed))  # a random-initialised backbone is drawn as training drew it
        model = build_model(cfg, result["model"]["description"], dtype).to(target)
        load_weights(model, checkpoint)
        autocast_dtype = None if dtype == torch.float32 else dtype
        if result.get("distributed", {}).get("deepspeed_stage") and autocast_dtype is not None:
            model.to(autocast_dtype)  # DeepSpeed trains and scores the whole module in its half precision
            autocast_dtype = None
        return cls(model, cfg, Layout.of(result["data"]["input"]), target, autocast_dtype,
                   batch_size or cfg.eval_batch_size)

    # ------------------------------------------------------------------ input
    def series(self, frame: pd.DataFrame, name: str | Path = "input", *, fillna: str | None = None) -> Series:
        """The frame checked against the training file's layout: same variables in the same order, dates that
        increase (and, when training data was regular, step at its frequency), values filled as --fillna says."""
        lay = self.layout
        if lay.date_column not in frame.columns:
            raise UserError(f"{name}: no date column {lay.date_column!r} (the run was trained on a file whose "
                            f"dates are in {lay.date_column!r})")
        present = [str(c) for c in frame.columns if c != lay.date_column and c not in lay.drop_columns]
        needed = [lay.target] if lay.features == "S" else lay.file_columns
        missing = [c for c in needed if c not in present]
        if missing:
            raise UserError(f"{name}: missing column(s) {', '.join(missing)}; the run reads "
                            f"{', '.join(needed)}")
        if lay.features != "S":
            extra = [c for c in present if c not in needed]
            if extra:
                raise UserError(f"{name}: column(s) {', '.join(extra)} were not in the training file; the run "
                                f"reads {', '.join(needed)}")
            if present != needed:
                raise UserError(f"{name}: columns in another order than training: {', '.join(present)}; "
                                f"the run reads {', '.join(needed)}")
        series = series_from_frame(frame, name, date_column=lay.date_column, target=lay.target,
                                   features=lay.features, fillna=fillna or lay.fillna,
                                   drop_columns=tuple(lay.drop_columns))
        return series

    def _check_step(self, series: Series, first: int, name: str | Path) -> None:
        """Rows from `first` on step at the trained frequency (when the training file did)."""
        lay = self.layout
        if not lay.regular or not lay.freq:
            return
        off = first_off_step(series.dates[first:], lay.freq)
        if off is not None:
            row = first + off
            raise UserError(f"{name}: {row_label(name, row)} ({series.dates[row]}) is not one {lay.freq} step after "
                            f"the row before it; the run was trained on data sampled every {lay.freq}")

    # ------------------------------------------------------------------ forecasts
    def _forecast(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scaled forecasts of a batch of scaled windows, aligned with its target as the evaluation loop aligns
        them, in the run's precision (float32, on the CPU)."""
        amp = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype \
            else contextlib.nullcontext()
        with torch.inference_mode(), eval_attention(), amp:
            return forecast(self.model, {"x": batch["x"].to(self.device), "y": batch["y"]}).cpu()  # y: its shape

    def _windows(self, scaled: np.ndarray, pred_len: int) -> tuple[np.ndarray, WindowDataset]:
        """Forecasts [windows, pred_len, outputs] of every window of `scaled`, ordered as the model's columns."""
        lay = self.layout
        dataset = WindowDataset(scaled, self.cfg.seq_len, pred_len, channel_independent=lay.features != "MS",
                                target_only=lay.features == "MS")
        outputs = []
        for start in range(0, len(dataset), self.batch_size):
            batch = dataset.__getitems__(list(range(start, min(start + self.batch_size, len(dataset)))))
            outputs.append(self._forecast(batch))
        pred = torch.cat(outputs).numpy()
        if dataset.channel_independent:  # samples are variable-major: index = variable * windows + start
            pred = pred[..., 0].reshape(dataset.n_vars, dataset.n_windows, -1).transpose(1, 2, 0)
        return pred, dataset

    def predict(self, frame: pd.DataFrame, *, rolling: bool = False, fillna: str | None = None,
                name: str | Path = "input") -> pd.DataFrame:
        """The next pred_len steps after the frame's last row, in data units, timestamps continuing the dates;
        rolling=True: every window of the frame beside its truth (long format), metrics in `.attrs["metrics"]`.
        `name` says where the frame came from in error messages (a Path: rows are named by their CSV line)."""
        return self.forecast_series(self.series(frame, name, fillna=fillna), rolling=rolling, name=name)

    def forecast_series(self, series: Series, *, rolling: bool = False, name: str | Path = "input") -> pd.DataFrame:
        """predict() for a series already checked by series()."""
        return self._rolling(series, name) if rolling else self._future(series, name)

    def _scaled(self, series: Series, name: str | Path) -> np.ndarray:
        return standardise(series.values, self.layout.mean, self.layout.std, series.columns, name)

    def _output_index(self) -> list[int]:
        """Positions of the output variables (file order) among the model's forecast columns."""
        lay = self.layout
        forecast_columns = [lay.target] if lay.features in ("S", "MS") else lay.columns
        return [forecast_columns.index(c) for c in lay.outputs]

    def _unscale(self, scaled: np.ndarray) -> np.ndarray:
        """Model-ordered scaled forecasts [..., outputs] -> data units."""
        lay = self.layout
        if lay.features == "MS":
            return scaled * lay.std[-1] + lay.mean[-1]
        return scaled * lay.std[: scaled.shape[-1]] + lay.mean[: scaled.shape[-1]]

    def _future(self, series: Series, name: str | Path) -> pd.DataFrame:
        seq_len, pred_len = self.cfg.seq_len, self.cfg.pred_len
        if len(series.values) < seq_len:
            raise UserError(f"{name}: {len(series.values)} rows; the model reads the last {seq_len} (seq_len), "
                            f"give at least {seq_len}")
        self._check_step(series, len(series.values) - seq_len, name)
        window = self._scaled(series, name)[-seq_len:]
        pred, _ = self._windows(np.concatenate([window, np.zeros((pred_len, window.shape[1]))]), pred_len)
        values = self._unscale(pred[0])[:, self._output_index()]
        dates = future_dates(series.dates, self.layout.freq, pred_len)
        out = pd.DataFrame(values, columns=self.layout.outputs)
        out.insert(0, self.layout.date_column, dates)
        return out

    def _rolling(self, series: Series, name: str | Path) -> pd.DataFrame:
        seq_len, pred_len = self.cfg.seq_len, self.cfg.pred_len
        if len(series.values) < seq_len + pred_len:
            raise UserError(f"{name}: {len(series.values)} rows; --rolling needs at least seq_len + pred_len = "
                            f"{seq_len + pred_len} (a window to read and one to score)")
        self._check_step(series, 0, name)
        scaled = self._scaled(series, name)
        pred, dataset = self._windows(scaled, pred_len)
        n_windows = dataset.n_windows
        rows = np.arange(n_windows)[:, None] + seq_len + np.arange(pred_len)  # [windows, pred_len]
        truth_scaled = scaled[rows][..., -1:] if self.layout.features == "MS" else scaled[rows]
        pred_data, truth_data = self._unscale(pred), self._unscale(truth_scaled)
        scaled_scores, data_scores = score(pred, truth_scaled), score(pred_data, truth_data)
        metrics = {"windows": n_windows, "mse": scaled_scores["mse"], "mae": scaled_scores["mae"],
                   "mse_data": data_scores["mse"], "mae_data": data_scores["mae"],
                   "baselines": score_windows(dataset, pred_len, self.layout.season_length)}
        order = self._output_index()
        out = pd.DataFrame({"origin": np.repeat(series.dates[seq_len - 1: seq_len - 1 + n_windows], pred_len),
                            self.layout.date_column: series.dates[rows.ravel()],
                            "step": np.tile(np.arange(1, pred_len + 1), n_windows)})
        for position, column in zip(order, self.layout.outputs, strict=True):
            out[column] = truth_data[..., position].ravel()
            out[f"{column}_forecast"] = pred_data[..., position].ravel()
        out.attrs["metrics"] = metrics
        return out


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The trainer's metrics (engine.evaluate.metrics) of forecasts beside their truth."""
    scores = MetricAccumulator()
    scores.update(torch.from_numpy(pred), torch.from_numpy(truth))
    return scores.compute()
