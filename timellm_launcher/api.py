"""The Python front door, shaped like neuralforecast's: fit a DataFrame, predict, cross-validate, save, load.

    from timellm_launcher import TimeLLMForecaster

    model = TimeLLMForecaster(seq_len=96, pred_len=24, features="S", target="OT", train_epochs=2).fit(frame)
    future = model.predict()                                   # the pred_len steps after the frame
    backtest = model.cross_validation(frame, n_windows=10, step_size=24)
    model.save("my_model")                                     # one folder: results.json + best.safetensors
    again = TimeLLMForecaster.load("my_model")

Underneath it is run_main.py: the flags are run_main.py's (as keyword arguments), the frame is written as the file a
`--data long` (parquet: many series, unique_id/ds/y) or `--data custom` (CSV: one wide table) run reads (into
<output_dir>/data/, named by its content, so a later fit never replaces it), and the
same Config, builders and training loop train it; the result is an ordinary run folder, which forecast.py can use
too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from timellm_launcher.core.errors import UserError
from timellm_launcher.core.files import write_bytes, write_json
from timellm_launcher.engine.config import build_parser, config_from_args
from timellm_launcher.engine.forecast.forecaster import Forecaster
from timellm_launcher.engine.model_io import BEST
from timellm_launcher.engine.report.run_report import RESULTS_FILE


def flags_to_argv(flags: dict[str, Any]) -> list[str]:
    """{"seq_len": 96, "use_amp": True, "levels": (80, 95)} -> ["--seq_len", "96", "--use_amp", "--levels", "80",
    "95"]: keyword arguments as run_main.py's command line, so they are parsed and checked the same way."""
    argv = []
    for name, value in flags.items():
        if isinstance(value, bool):
            argv += [f"--{name}"] if value else []
        elif isinstance(value, list | tuple):
            argv += [f"--{name}", *map(str, value)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


class TimeLLMForecaster:
    """A Time-LLM run driven from Python. Keyword arguments are run_main.py flags (`data`, `root_path` and
    `data_path` are set by fit)."""

    def __init__(self, **flags: Any) -> None:
        given = {"data", "root_path", "data_path"} & set(flags)
        if given:
            raise UserError(f"TimeLLMForecaster: {', '.join(sorted(given))} are set by fit(frame); leave them out")
        self.flags = flags
        self.config = config_from_args(build_parser("api").parse_args(flags_to_argv(flags)))  # checked now
        self.run: Path | None = None
        self.forecaster: Forecaster | None = None
        self.frame: pd.DataFrame | None = None

    def fit(self, frame: pd.DataFrame, *, name: str = "frame") -> TimeLLMForecaster:
        """Train and test on `frame`: many series in long format when it has the id and time columns (unique_id, ds
        unless id_col/time_col say otherwise; --data long: splits per series), else a date column first and numeric
        variables (--data custom: splits 70/10/20). The run's folders go under output_dir and checkpoints as for
        run_main.py."""
        from timellm_launcher.engine.train.trainer import run_experiments

        folder = Path(self.config.output_dir) / "data"
        folder.mkdir(parents=True, exist_ok=True)
        long = {self.config.id_col, self.config.time_col} <= set(map(str, frame.columns))
        content = frame.to_parquet(index=False) if long else frame.to_csv(index=False).encode()
        file = f"{name}_{hashlib.sha256(content).hexdigest()[:10]}.{'parquet' if long else 'csv'}"
        if not (folder / file).is_file():  # named by its content: other data never replaces it
            write_bytes(folder / file, content)
        data = "long" if long else "custom"
        argv = flags_to_argv({**self.flags, "data": data, "root_path": str(folder), "data_path": file})
        results = run_experiments(config_from_args(build_parser("api").parse_args(argv)))
        self.result = results[-1]
        self.run = Path(self.config.output_dir) / self.result["setting"]
        self.forecaster = Forecaster.load(self.run)
        self.frame = frame
        return self

    def _fitted(self) -> Forecaster:
        if self.forecaster is None:
            raise UserError("TimeLLMForecaster: call fit(frame) or TimeLLMForecaster.load(path) first")
        return self.forecaster

    def predict(self, frame: pd.DataFrame | None = None, h: int | None = None) -> pd.DataFrame:
        """The next h (default pred_len) steps after `frame` (default: the frame fit saw), with interval columns when
        the run has --levels; long frames give neuralforecast's layout (unique_id, ds, TimeLLM, TimeLLM-lo-80, ...)."""
        forecaster = self._fitted()
        if frame is None:
            if self.frame is None:
                raise UserError("predict(): give the frame to forecast from (a loaded model keeps no data)")
            frame = self.frame
        pred_len = forecaster.cfg.pred_len
        if h is not None and not 1 <= h <= pred_len:
            raise UserError(f"predict(h={h}): the model forecasts 1 to {pred_len} steps (its pred_len)")
        if forecaster.is_long:
            return forecaster.long_forecast(frame).future(h)
        return forecaster.predict(frame).head(h or pred_len)

    def cross_validation(self, frame: pd.DataFrame | None = None, n_windows: int = 1,
                         step_size: int = 1) -> pd.DataFrame:
        """The last n_windows windows of `frame` (of each series, for a long-format run), step_size rows apart,
        forecast beside their truth (long, with a `cutoff` column; scores in .attrs["metrics"])."""
        forecaster = self._fitted()
        frame = self.frame if frame is None else frame
        if frame is None:
            raise UserError("cross_validation(): give the frame to backtest")
        return forecaster.predict(frame, rolling=True, n_windows=n_windows, step_size=step_size)

    def save(self, path: str | Path) -> Path:
        """One self-contained folder: results.json (naming the checkpoint beside it) and best.safetensors, which
        forecast.py --run and TimeLLMForecaster.load accept on any machine."""
        self._fitted()
        target = Path(path)
        if target.exists() and any(target.iterdir()):
            raise UserError(f"save({target}): the folder exists and is not empty; name a new one")
        record = json.loads((self.run / RESULTS_FILE).read_text(encoding="utf-8"))
        source = self.forecaster.checkpoint
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / BEST)
        record.update(checkpoint=BEST, checkpoint_absolute=str((target / BEST).resolve()))
        write_json(target / RESULTS_FILE, record)
        return target

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> TimeLLMForecaster:
        """A saved model (or any run folder), ready to predict frames shaped like its training data."""
        forecaster = Forecaster.load(path, device=device)
        model = cls.__new__(cls)
        model.flags, model.config, model.frame = {}, forecaster.cfg, None
        model.run, model.forecaster = Path(path), forecaster
        return model
