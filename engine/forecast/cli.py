"""forecast.py's work: read the file once, forecast it with the run, write the CSV (and plot) atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core.errors import UserError
from core.files import atomic_path
from data_provider.csv_loader import Series, read_frame
from engine.evaluate.baselines import best_baseline, skill
from engine.forecast.forecaster import Forecaster, read_run
from engine.report.plots import draw_forecast
from engine.report.results import RESULTS_FILE
from engine.train.run_folders import BEST

HISTORY_SHOWN = 4  # the plot shows this many forecast lengths of history before the forecast


def data_file(run_file: Path, result: dict, root_path: str, data_path: str) -> Path:
    """--root_path/--data_path, --data_path alone (relative to here), or the file the run was scored on."""
    if data_path:
        return Path(root_path) / data_path if root_path else Path(data_path)
    if root_path:
        raise UserError("--root_path needs --data_path (the CSV under it to forecast)")
    data = result["data"]
    return Path(data.get("test_data", data)["path"])


PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
KEPT_FILES = (RESULTS_FILE, "test_" + RESULTS_FILE, BEST)  # a run's own records: never overwritten


def output_file(flag: str, requested: str, run_folder: Path, data: Path, kind: str, suffix: str,
                protected: list[Path]) -> Path:
    """Where a result goes, checked before any forecast is computed: a writable folder, the right kind of file, and
    never the run's own records, the input file or the other output."""
    path = Path(requested) if requested else run_folder / f"{kind}_{data.stem}{suffix}"
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a {suffix} file")
    if suffix == ".png" and path.suffix.lower() not in PLOT_FORMATS:
        raise UserError(f"{flag} {path}: name a picture file ({', '.join(PLOT_FORMATS)})")
    if path.name in KEPT_FILES or any(path.resolve() == other.resolve() for other in protected):
        raise UserError(f"{flag} {path}: would overwrite the run's records, the input file or the other output; "
                        "name another file")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{flag} {path}: folder {path.parent} is not writable")
    return path


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def run_forecast(*, run: str, root_path: str, data_path: str, output: str, plot: str, rolling: bool,
                 fillna: str | None, device: str | None, batch_size: int) -> pd.DataFrame:
    if batch_size < 0:
        raise UserError(f"--batch_size must be >= 0 (0: the run's --eval_batch_size), got {batch_size}")
    run_file, result = read_run(run)
    path = data_file(run_file, result, root_path, data_path)
    kind = "rolling" if rolling else "forecast"
    out = output_file("--output", output, run_file.parent, path, kind, ".csv", [run_file, path])
    picture = output_file("--plot", plot, run_file.parent, path, kind, ".png", [run_file, path, out]) if plot else None
    frame = read_frame(path)
    forecaster = Forecaster.from_record(run_file, result, device=device, batch_size=batch_size)
    series = forecaster.series(frame, path, fillna=fillna)
    forecast = forecaster.forecast_series(series, rolling=rolling, name=path)
    lay, cfg = forecaster.layout, forecaster.cfg
    print(f"run {result['setting']} ({cfg.llm_model}, seq_len {cfg.seq_len}, pred_len {cfg.pred_len}) on "
          f"{forecaster.device}, {path.name}: {len(frame)} rows")
    write_csv(forecast, out)
    if rolling:
        m = forecast.attrs["metrics"]
        print(f"rolling: {m['windows']} windows x {cfg.pred_len} steps x {len(lay.outputs)} variable(s)\n"
              f"  mse {m['mse']:.4f}  mae {m['mae']:.4f} (scaled, as results.json reports)\n"
              f"  mse {m['mse_data']:.6g}  mae {m['mae_data']:.6g} (data units)")
        if m["baselines"]:
            name, base = best_baseline(m["baselines"])
            listed = ", ".join(f"{n.replace('_', ' ')} {b['mse']:.4f}/{b['mae']:.4f}" for n, b in
                               m["baselines"].items())
            print(f"  baselines on the same windows (mse/mae, scaled): {listed}; skill over {name.replace('_', ' ')}:"
                  f" mse {skill(m['mse'], base['mse']):+.1%}, mae {skill(m['mae'], base['mae']):+.1%}")
    else:
        dates = forecast[lay.date_column]
        print(f"forecast: {cfg.pred_len} steps of {', '.join(lay.outputs)} from {dates.iloc[0]} to "
              f"{dates.iloc[-1]} (every {lay.freq})")
    if picture is not None:
        draw_picture(picture, forecaster, series, forecast, rolling, path.name)
        print(f"plot: {picture}")
    print(f"forecasts: {out}")
    return forecast


def draw_picture(path: Path, forecaster: Forecaster, series: Series, forecast: pd.DataFrame, rolling: bool,
                 name: str) -> None:
    """The target's history and the forecast after the file (rolling: the last window, beside its truth)."""
    lay, pred_len = forecaster.layout, forecaster.cfg.pred_len
    dates, values = pd.Series(series.dates), series.values[:, -1]  # the target is the series' last column
    shown = HISTORY_SHOWN * pred_len
    if rolling:
        last = forecast.iloc[-pred_len:]
        future, prediction, truth = last[lay.date_column], last[f"{lay.target}_forecast"], last[lay.target]
        dates, values = dates[:-pred_len], values[:-pred_len]
        m = forecast.attrs["metrics"]
        title = f"{name}: last of {m['windows']} windows (all windows: mse {m['mse']:.4f}, mae {m['mae']:.4f} scaled)"
    else:
        future, prediction, truth = forecast[lay.date_column], forecast[lay.target], None
        title = f"{name}: the next {pred_len} steps"
    draw_forecast(path, dates.iloc[-shown:], values[-shown:], future.to_numpy(), prediction.to_numpy(),
                  None if truth is None else truth.to_numpy(), lay.target, title)
