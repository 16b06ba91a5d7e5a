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

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.csv_loader import Series, row_label, series_from_frame
from timellm_launcher.data_provider.data_factory import standardise
from timellm_launcher.data_provider.seasonality import first_off_step, future_dates, is_frequency
from timellm_launcher.data_provider.windows import WindowDataset
from timellm_launcher.engine.config import SHORT_TERM, Config
from timellm_launcher.engine.evaluate.intervals import column_name, input_spread
from timellm_launcher.engine.evaluate.loop import forecast
from timellm_launcher.engine.forecast.backtest import Backtest
from timellm_launcher.engine.forecast.long_forecast import LongForecast, LongLayout, check_long_record, read_panel
from timellm_launcher.engine.model_io import DTYPES, build_model, load_weights, weights_run_id
from timellm_launcher.engine.report.run_report import RESULTS_FILE
from timellm_launcher.engine.runtime import configure_backends
from timellm_launcher.models.attention import eval_attention
from timellm_launcher.models.time_llm import TimeLLM


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
    if not isinstance(result["config"], dict):
        shown = json.dumps(result["config"])[:80]
        raise UserError(f"--run {file}: field config must be an object of flags, got {shown}")
    if result["config"].get("task_name") == SHORT_TERM:
        raise UserError(f"--run {file}: an M4 run; forecast.py forecasts runs trained on a CSV with a date column "
                        "(score M4 checkpoints with run_main.py --is_training 0)")
    if not isinstance(result.get("data"), dict) or "input" not in result["data"] \
            or not isinstance(result.get("model"), dict) or "description" not in result["model"]:
        raise UserError(f"--run {file}: written before runs recorded their scaler, columns and prompt; "
                        "train it again with this version to forecast with it")
    check_record(file, result)
    return file, result


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_record(file: Path, result: dict[str, Any]) -> None:
    """Every field forecasting reads from results.json, checked for type and shape; a bad one is named in one line
    (results.json is a shared, editable file)."""
    def require(name: str, ok: bool, wanted: str, value: Any) -> None:
        if not ok:
            shown = json.dumps(value)[:80] if isinstance(value, str | int | float | list | dict | None) else value
            raise UserError(f"--run {file}: field {name} must be {wanted}, got {shown}")

    config, data, lay = result["config"], result["data"], result["data"]["input"]
    require("config", isinstance(config, dict), "an object of flags", config)
    require("data.input", isinstance(lay, dict), "an object", lay)
    scored = data.get("test_data", data)
    require("data.path", isinstance(scored, dict) and isinstance(scored.get("path"), str), "the data file's path",
            scored.get("path") if isinstance(scored, dict) else scored)
    require("setting", isinstance(result.get("setting"), str), "a string", result.get("setting"))
    seed = result.get("seed")
    require("seed", isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32,
            "an integer in [0, 2**32)", seed)
    require("model.description", isinstance(result["model"]["description"], str), "a string",
            result["model"]["description"])
    distributed = result.get("distributed", {})
    require("distributed", isinstance(distributed, dict), "an object", distributed)
    precision = distributed.get("mixed_precision", "no")
    require("distributed.mixed_precision", precision in (*DTYPES, "no"), f"one of no, {', '.join(DTYPES)}",
            precision)
    stage = distributed.get("deepspeed_stage")
    require("distributed.deepspeed_stage", stage is None or (isinstance(stage, int) and not isinstance(stage, bool)),
            "null or an integer", stage)
    flags = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in config.items():
        if name not in flags:
            continue
        default, choices = flags[name].default, flags[name].metadata["choices"]
        kind = bool if isinstance(default, bool) else (int | float) if isinstance(default, float) else \
            (list | tuple) if isinstance(default, tuple) else type(default)
        ok = isinstance(value, kind) and (isinstance(default, bool) or not isinstance(value, bool))
        require(f"config.{name}", ok, f"of type {type(default).__name__}", value)
        require(f"config.{name}", not choices or value in choices, f"one of {choices}", value)
    if lay.get("format") == "long":
        check_long_record(require, lay)
    else:
        check_wide_record(require, lay)
    intervals = result.get("intervals")
    widths = intervals.get("half_widths") if isinstance(intervals, dict) else None
    require("intervals", intervals is None or (isinstance(widths, dict) and _number(intervals.get("floor")) and all(
        k.isdigit() and isinstance(v, list) and len(v) == config.get("pred_len") and
        all(x is None or (_number(x) and x >= 0) for x in v) for k, v in widths.items())),
        "null or {floor: number, half_widths: {level: [pred_len numbers >= 0]}}", intervals)
    try:
        Config(**{k: v for k, v in config.items() if k in flags}).validate()
    except UserError as err:
        raise UserError(f"--run {file}: its config is not one a run can have ({err})") from None


def check_wide_record(require, lay: dict[str, Any]) -> None:
    """The layout fields a wide-format forecast reads."""
    for name in ("date_column", "target", "freq", "fillna", "features"):
        require(f"data.input.{name}", isinstance(lay.get(name), str), "a string", lay.get(name))
    require("data.input.features", lay["features"] in ("S", "M", "MS"), "S, M or MS", lay["features"])
    require("data.input.fillna", lay["fillna"] in ("none", "ffill", "zero"), "none, ffill or zero", lay["fillna"])
    for name in ("file_columns", "columns", "drop_columns"):
        require(f"data.input.{name}", _strings(lay.get(name)), "a list of column names", lay.get(name))
    columns = lay["columns"]
    require("data.input.columns", bool(columns) and lay["target"] == columns[-1] and set(columns) <= set(
        lay["file_columns"]), f"file columns ending with the target {lay['target']!r}", columns)
    require("data.input.regular", isinstance(lay.get("regular"), bool), "true or false", lay.get("regular"))
    require("data.input.freq", is_frequency(lay["freq"]), "a pandas frequency (h, D, 15min, MS, ...)", lay["freq"])
    season = lay.get("season_length")
    require("data.input.season_length", isinstance(season, int) and not isinstance(season, bool) and season >= 0,
            "an integer >= 0", season)
    for name in ("mean", "std"):
        values = lay.get(name)
        require(f"data.input.{name}", isinstance(values, list) and len(values) == len(columns) and
                all(_number(v) for v in values), f"a list of {len(columns)} finite number(s), one per column",
                values)
    require("data.input.std", all(v > 0 for v in lay["std"]), "positive (a standard deviation)", lay["std"])


def find_checkpoint(file: Path, result: dict[str, Any], override: str | Path | None = None) -> Path:
    """The run's own best.safetensors: `override` (--checkpoint) or where results.json records it, relative to the
    run folder first, then as the absolute path it had. A file is taken only when the run id in its metadata is the
    one results.json records, so a moved run never forecasts with another run's weights left at its old path."""
    run_id = result.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise UserError(f"--run {file.parent}: written before runs recorded their id, so its checkpoint cannot be "
                        "verified; train it again with this version to forecast with it")
    if override:
        candidates = [Path(override)]
    else:
        recorded = [result.get("checkpoint"), result.get("checkpoint_absolute")]
        candidates = [file.parent / c for c in recorded if isinstance(c, str) and c]
    foreign = []
    for candidate in candidates:
        if candidate.is_file():
            owner = weights_run_id(candidate)
            if owner == run_id:
                return candidate
            foreign.append(f"{candidate} (run id {owner})")
    this = f"run {result.get('setting', file.parent.name)} (id {run_id})"
    if foreign:
        raise UserError(f"--run {file.parent}: {'; '.join(foreign)} belongs to another run than {this}; pass "
                        "--checkpoint with this run's own best.safetensors")
    where = " or ".join(str(c) for c in candidates) or "nowhere"
    raise UserError(f"--run {file.parent}: its checkpoint is not at {where} (did training finish? if the "
                    "checkpoints folder moved, pass --checkpoint PATH/best.safetensors)")


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

    def __init__(self, model: TimeLLM, cfg: Config, layout: Layout | LongLayout, device: torch.device,
                 autocast_dtype: torch.dtype | None, batch_size: int,
                 calibration: dict | None = None) -> None:
        self.model, self.cfg, self.layout, self.device = model.eval(), cfg, layout, device
        self.autocast_dtype, self.batch_size = autocast_dtype, batch_size
        self.checkpoint: Path | None = None  # the weights loaded (set by from_record)
        # the run's intervals (--levels): the spread floor and, per level, the score quantile per horizon step
        self.calibration = calibration
        self.half_widths = {level: np.array([np.nan if w is None else w for w in widths], dtype=np.float64)
                            for level, widths in (calibration or {}).get("half_widths", {}).items()}

    @classmethod
    def load(cls, run: str | Path, *, device: str | None = None, batch_size: int = 0,
             checkpoint: str | Path | None = None) -> Forecaster:
        """Rebuild the run's model on `device` (default: cuda when available); offline unless it trained with
        --allow_download. `checkpoint`: the run's best.safetensors when it is not where the run recorded it."""
        return cls.from_record(*read_run(run), device=device, batch_size=batch_size, checkpoint=checkpoint)

    @classmethod
    def from_record(cls, file: Path, result: dict[str, Any], *, device: str | None = None,
                    batch_size: int = 0, checkpoint: str | Path | None = None) -> Forecaster:
        """The same from a results.json already read (read_run)."""
        checkpoint = find_checkpoint(file, result, checkpoint)
        known = {f.name for f in dataclasses.fields(Config)}
        cfg = Config(**{k: v for k, v in result["config"].items() if k in known})
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if target.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")
        precision = result.get("distributed", {}).get("mixed_precision", "no")
        dtype = DTYPES.get(precision, torch.float32)
        configure_backends(target, dtype)
        set_seed(result.get("seed", cfg.seed))  # a random-initialised backbone is drawn as training drew it
        model = build_model(cfg, result["model"]["description"], dtype, target)
        load_weights(model, checkpoint)
        autocast_dtype = None if dtype == torch.float32 else dtype
        if result.get("distributed", {}).get("deepspeed_stage") and autocast_dtype is not None:
            model.to(autocast_dtype)  # DeepSpeed trains and scores the whole module in its half precision
            autocast_dtype = None
        record = result["data"]["input"]
        layout = LongLayout.of(record) if record.get("format") == "long" else Layout.of(record)
        made = cls(model, cfg, layout, target, autocast_dtype,
                   batch_size or cfg.eval_batch_size, result.get("intervals"))
        made.checkpoint = checkpoint
        return made

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

    def _dataset(self, scaled: np.ndarray) -> WindowDataset:
        lay = self.layout
        return WindowDataset(scaled, self.cfg.seq_len, self.cfg.pred_len, channel_independent=lay.features != "MS",
                             target_only=lay.features == "MS")

    def _window_forecasts(self, dataset: WindowDataset, starts: np.ndarray) -> dict[str, torch.Tensor]:
        """Inputs, truth and forecasts [windows, steps, variables] (scaled, model order) of the windows at `starts`."""
        if dataset.channel_independent:  # samples are variable-major: index = variable * windows + start
            index = (np.arange(dataset.n_vars)[:, None] * dataset.n_windows + starts[None, :]).ravel().tolist()
        else:
            index = starts.tolist()
        batch = dataset.__getitems__(index)
        pred = self._forecast(batch)
        if dataset.channel_independent:
            def regroup(t: torch.Tensor) -> torch.Tensor:
                return t[..., 0].reshape(dataset.n_vars, len(starts), -1).permute(1, 2, 0)
            return {"x": regroup(batch["x"]), "y": regroup(batch["y"]), "pred": regroup(pred)}
        return {"x": batch["x"], "y": batch["y"], "pred": pred}

    def predict(self, frame: pd.DataFrame, *, rolling: bool = False, fillna: str | None = None,
                name: str | Path = "input", n_windows: int = 0, step_size: int = 1) -> pd.DataFrame:
        """The next pred_len steps after the frame (wide, like the input), or under `rolling` its windows beside
        the truth (long; the last `n_windows` windows `step_size` rows apart, 0: all), with the scores in
        `.attrs["metrics"]`. A long-format run takes and returns long frames (engine/forecast/long_forecast.py)."""
        if self.is_long:
            source = self.long_forecast(frame, name, fillna=fillna)
            if not rolling:
                return source.future()
            backtest = source.backtest(n_windows, step_size)
            out = pd.concat(list(backtest), ignore_index=True)
            out.attrs["metrics"] = backtest.metrics
            return out
        return self.forecast_series(self.series(frame, name, fillna=fillna), rolling=rolling, name=name,
                                    n_windows=n_windows, step_size=step_size)

    @property
    def is_long(self) -> bool:
        return isinstance(self.layout, LongLayout)

    def long_forecast(self, frame: pd.DataFrame | Path, name: str | Path = "input", *,
                      fillna: str | None = None) -> LongForecast:
        """A long-format run's forecasts of a frame or file of many series."""
        return LongForecast(self, read_panel(self, frame, name, fillna), name)

    def forecast_series(self, series: Series, *, rolling: bool = False, name: str | Path = "input",
                        n_windows: int = 0, step_size: int = 1) -> pd.DataFrame:
        """predict() for a series already checked by series()."""
        if not rolling:
            return self._future(series, name)
        backtest = self.backtest(series, name=name, n_windows=n_windows, step_size=step_size)
        out = pd.concat(list(backtest), ignore_index=True)
        out.attrs["metrics"] = backtest.metrics
        return out

    def backtest(self, series: Series, *, name: str | Path = "input", n_windows: int = 0, step_size: int = 1,
                 first_row: int = 0) -> Backtest:
        """Windows of the series beside their truth, a batch at a time (engine/forecast/backtest.py)."""
        return Backtest(self, series, name=name, n_windows=n_windows, step_size=step_size, first_row=first_row)

    def _scaled(self, series: Series, name: str | Path) -> np.ndarray:
        return standardise(series.values, self.layout.mean, self.layout.std, series.columns, name)

    def _output_index(self) -> list[int]:
        """Positions of the output variables (file order) among the model's forecast columns."""
        lay = self.layout
        forecast_columns = [lay.target] if lay.features in ("S", "MS") else lay.columns
        return [forecast_columns.index(c) for c in lay.outputs]

    def _scales(self) -> np.ndarray:
        """Each output variable's train-split standard deviation (file order): the data units of one scaled unit."""
        lay = self.layout
        if lay.features in ("S", "MS"):
            return lay.std[-1:]
        return lay.std[self._output_index()]

    def _add_intervals(self, out: pd.DataFrame, forecasts: dict[str, np.ndarray], steps: np.ndarray,
                       spreads: np.ndarray) -> None:
        """`<forecast column>-lo-<level>` / `-hi-` for each level: the forecast -+ the level's score quantile at each
        row's horizon step (1-based `steps`) x (its window's input spread + floor), in data units; `spreads` [rows,
        outputs] in scaled units (engine/evaluate/intervals.py)."""
        if not self.half_widths:
            return
        scale = (spreads + self.calibration["floor"]) * self._scales()[None, :]
        for level, widths in sorted(self.half_widths.items(), key=lambda item: int(item[0])):
            for position, (column, values) in enumerate(forecasts.items()):
                half = widths[steps - 1] * scale[:, position]
                out[column_name(column, int(level), "lo")] = values - half
                out[column_name(column, int(level), "hi")] = values + half

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
        dataset = self._dataset(np.concatenate([window, np.zeros((pred_len, window.shape[1]))]))
        got = self._window_forecasts(dataset, np.array([0]))
        order = self._output_index()
        values = self._unscale(got["pred"].numpy()[0])[:, order]
        spread = input_spread(got["x"], got["y"].shape[-1]).numpy()[0, 0, order]
        dates = future_dates(series.dates, self.layout.freq, pred_len)
        out = pd.DataFrame(values, columns=self.layout.outputs)
        self._add_intervals(out, {c: out[c].to_numpy() for c in self.layout.outputs}, np.arange(1, pred_len + 1),
                            np.repeat(spread[None, :], pred_len, axis=0))
        out.insert(0, self.layout.date_column, dates)
        return out
