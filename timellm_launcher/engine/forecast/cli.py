"""forecast.py's work: read the file once, forecast it with the run, write the CSV (and plot) atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet

from timellm_launcher.core.errors import UserError
from timellm_launcher.core.files import atomic_path, version_name
from timellm_launcher.data_provider.csv_loader import Series, read_frame
from timellm_launcher.data_provider.long_format import PARQUET
from timellm_launcher.engine.evaluate.baselines import best_baseline, skill_text
from timellm_launcher.engine.evaluate.intervals import column_name
from timellm_launcher.engine.forecast.forecaster import Forecaster, read_run
from timellm_launcher.engine.model_io import BEST
from timellm_launcher.engine.report.plots import draw_forecast
from timellm_launcher.engine.report.run_report import RESULTS_FILE

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


def next_free(path: Path, taken: list[Path]) -> Path:
    """path, or path_v2, path_v3, ...: the first name no file (and no other output of this call) has."""
    candidate, number = path, 1
    while candidate.exists() or candidate in taken:
        number += 1
        candidate = path.with_name(version_name(path.stem, number) + path.suffix)
    return candidate


def output_file(flag: str, requested: str, run_folder: Path, data: Path, kind: str, suffix: str,
                protected: list[Path], overwrite: bool) -> Path:
    """Where a result goes, checked before any forecast is computed: a writable folder, the right kind of file,
    never the run's own records, the input file or the other output, and never an earlier forecast (the default
    name takes the next free version; a named file that exists needs --overwrite)."""
    path = Path(requested) if requested else next_free(run_folder / f"{kind}_{data.stem}{suffix}", protected)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a {suffix} file")
    if suffix == ".png" and path.suffix.lower() not in PLOT_FORMATS:
        raise UserError(f"{flag} {path}: name a picture file ({', '.join(PLOT_FORMATS)})")
    if path.name in KEPT_FILES or any(path.resolve() == other.resolve() for other in protected):
        raise UserError(f"{flag} {path}: would overwrite the run's records, the input file or the other output; "
                        "name another file")
    if path.is_file() and requested and not overwrite:
        raise UserError(f"{flag} {path} already exists; pass --overwrite to replace it, or name another file")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{flag} {path}: folder {path.parent} is not writable")
    return path


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """A CSV, or parquet when the name ends in .parquet; atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False) if is_parquet(path) else frame.to_csv(tmp, index=False)


def run_forecast(*, run: str, root_path: str, data_path: str, output: str, plot: str, rolling: bool,
                 fillna: str | None, device: str | None, batch_size: int, checkpoint: str = "",
                 overwrite: bool = False, n_windows: int = 0, step_size: int = 1,
                 test_only: bool = False) -> pd.DataFrame | None:
    """forecast.py: the future after the file (returned), or a streamed backtest (written, not returned)."""
    if batch_size < 0:
        raise UserError(f"--batch_size must be >= 0 (0: the run's --eval_batch_size), got {batch_size}")
    if (n_windows or step_size != 1 or test_only) and not rolling:
        raise UserError("--n_windows, --step_size and --test_only choose the windows of --rolling; add --rolling")
    if test_only and data_path:
        raise UserError("--test_only rolls over the run's own test rows; leave out --data_path")
    run_file, result = read_run(run)
    path = data_file(run_file, result, root_path, data_path)
    kind = "rolling" if rolling else "forecast"
    out = output_file("--output", output, run_file.parent, path, kind, ".csv", [run_file, path], overwrite)
    picture = output_file("--plot", plot, run_file.parent, path, kind, ".png", [run_file, path, out],
                          overwrite) if plot else None
    forecaster = Forecaster.from_record(run_file, result, device=device, batch_size=batch_size,
                                        checkpoint=checkpoint or None)
    if forecaster.is_long:
        return run_long_forecast(forecaster, result, path, out, picture, rolling=rolling, fillna=fillna,
                                 n_windows=n_windows, step_size=step_size, test_only=test_only)
    frame = read_frame(path)
    series = forecaster.series(frame, path, fillna=fillna)
    lay, cfg = forecaster.layout, forecaster.cfg
    print(f"run {result['setting']} ({cfg.llm_model}, seq_len {cfg.seq_len}, pred_len {cfg.pred_len}) on "
          f"{forecaster.device}, {path.name}: {len(frame)} rows")
    if not rolling:
        forecast = forecaster.forecast_series(series, name=path)
        write_table(forecast, out)
        dates = forecast[lay.date_column]
        print(f"forecast: {cfg.pred_len} steps of {', '.join(lay.outputs)} from {dates.iloc[0]} to "
              f"{dates.iloc[-1]} (every {lay.freq})")
    else:
        first_row = result["data"]["borders"]["test"][0] if test_only else 0
        backtest = forecaster.backtest(series, name=path, n_windows=n_windows, step_size=step_size,
                                       first_row=first_row)
        last = write_chunks(backtest, out, cfg.pred_len)
        m = backtest.metrics
        where = f" of the test rows (from line {first_row + 2})" if test_only else ""
        print(f"rolling: {m['windows']} windows{where}, {step_size} row(s) apart, x {cfg.pred_len} steps x "
              f"{len(lay.outputs)} variable(s)\n"
              f"  mse {m['mse']:.4f}  mae {m['mae']:.4f} (scaled, as results.json reports)")
        for column, scores in m["data_units"].items():
            print(f"  {column}: mse {scores['mse']:.6g}  mae {scores['mae']:.6g} (data units)")
        print_backtest_extras(m)
    if picture is not None:
        shown = last if rolling else forecast
        if rolling:
            shown.attrs["metrics"] = backtest.metrics
        draw_picture(picture, forecaster, series, shown, rolling, path.name)
        print(f"plot: {picture}")
    print(f"forecasts: {out}")
    return None if rolling else forecast


def run_long_forecast(forecaster: Forecaster, result: dict, path: Path, out: Path, picture: Path | None, *,
                      rolling: bool, fillna: str | None, n_windows: int, step_size: int,
                      test_only: bool) -> pd.DataFrame | None:
    """forecast.py for a long-format run: every series' future, or a streamed backtest over every series."""
    cfg, lay = forecaster.cfg, forecaster.layout
    source = forecaster.long_forecast(path, path, fillna=fillna)
    print(f"run {result['setting']} ({cfg.llm_model}, seq_len {cfg.seq_len}, pred_len {cfg.pred_len}) on "
          f"{forecaster.device}, {path.name}: {len(source.panel.ids):,} series")
    for note in source.notes:
        print(note)
    if not rolling:
        forecast = source.future()
        write_table(forecast, out)
        print(f"forecast: {cfg.pred_len} steps of {len(source.panel.ids):,} series (every {lay.freq})")
        shown = forecast
    else:
        backtest = source.backtest(n_windows, step_size, test_only)
        shown = write_chunks(backtest, out, cfg.pred_len)
        m = backtest.metrics
        where = f" of each series' last {lay.test_size} points (its test targets)" if test_only else ""
        print(f"rolling: {m['windows']:,} windows of {m['series']:,} series{where}, {step_size} point(s) apart, x "
              f"{cfg.pred_len} steps\n  mse {m['mse']:.4f}  mae {m['mae']:.4f} (scaled by each series' scaler; "
              "each series' mse/mae in its own units: .attrs['metrics']['per_series'] from Python)")
        print_backtest_extras(m)
    if picture is not None:
        draw_long_picture(picture, source, shown, rolling, path.name)
        print(f"plot: {picture}")
    print(f"forecasts: {out}")
    return None if rolling else forecast


def print_backtest_extras(m: dict) -> None:
    """The intervals' coverage and the baselines on the backtest's windows."""
    if m["coverage"]:
        print("  intervals: " + ", ".join(f"{level}%: {100 * c:.1f}% of the truth inside" for level, c in
                                          sorted(m["coverage"].items(), key=lambda item: int(item[0]))))
    if m["baselines"]:
        name, base = best_baseline(m["baselines"])
        listed = ", ".join(f"{n.replace('_', ' ')} {b['mse']:.4f}/{b['mae']:.4f}" for n, b in m["baselines"].items())
        print(f"  baselines on the same windows (mse/mae, scaled): {listed}; skill over {name.replace('_', ' ')}: "
              f"{skill_text(m, base)}")


def draw_long_picture(path: Path, source, forecast: pd.DataFrame, rolling: bool, name: str) -> None:
    """The last series' history and its forecast (rolling: its last window, beside the truth)."""
    forecaster, panel = source.forecaster, source.panel
    lay, pred_len, column = forecaster.layout, forecaster.cfg.pred_len, source.model_column
    last = forecast.iloc[-pred_len:]
    series = str(last[lay.id_col].iloc[0])
    k = int(np.flatnonzero(panel.ids == series)[0])
    rows = slice(panel.offsets[k], panel.offsets[k + 1])
    dates, values = panel.dates[rows], panel.values[rows]
    if rolling:
        cut = len(dates) - int((dates > last["cutoff"].iloc[0]).sum())
        dates, values = dates[:cut], values[:cut]
    shown = HISTORY_SHOWN * pred_len
    bands = {int(level): (last[column_name(column, int(level), "lo")].to_numpy(),
                          last[column_name(column, int(level), "hi")].to_numpy()) for level in forecaster.half_widths}
    title = f"{name}, series {series}: " + ("its last backtest window" if rolling else f"the next {pred_len} steps")
    draw_forecast(path, pd.Series(dates[-shown:]), values[-shown:], last[lay.time_col].to_numpy(),
                  last[column].to_numpy(), last[lay.target].to_numpy() if rolling else None, lay.target, title, bands)


def write_chunks(chunks, path: Path, pred_len: int) -> pd.DataFrame:
    """Each chunk appended to one CSV (or one parquet file, a row group per chunk) as it comes, atomically: the file
    appears when the last is written; returns the last window, for the plot."""
    last = None
    with atomic_path(path) as tmp:
        if is_parquet(path):
            writer = None
            for chunk in chunks:
                table = pyarrow.Table.from_pandas(chunk, preserve_index=False)
                writer = writer or pyarrow.parquet.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                last = chunk.iloc[-pred_len:]
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "w", newline="") as handle:
                for i, chunk in enumerate(chunks):
                    chunk.to_csv(handle, index=False, header=i == 0)
                    last = chunk.iloc[-pred_len:]
    return last


def draw_picture(path: Path, forecaster: Forecaster, series: Series, forecast: pd.DataFrame, rolling: bool,
                 name: str) -> None:
    """The target's history and the forecast after the file (rolling: the last window, beside its truth)."""
    lay, pred_len = forecaster.layout, forecaster.cfg.pred_len
    dates, values = pd.Series(series.dates), series.values[:, -1]  # the target is the series' last column
    shown = HISTORY_SHOWN * pred_len
    if rolling:
        last = forecast.iloc[-pred_len:]
        column = f"{lay.target}_forecast"
        future, prediction, truth = last[lay.date_column], last[column], last[lay.target]
        dates, values = dates[:-pred_len], values[:-pred_len]
        m = forecast.attrs["metrics"]
        title = f"{name}: last of {m['windows']} windows (all windows: mse {m['mse']:.4f}, mae {m['mae']:.4f} scaled)"
    else:
        last, column = forecast, lay.target
        future, prediction, truth = forecast[lay.date_column], forecast[lay.target], None
        title = f"{name}: the next {pred_len} steps"
    bands = {int(level): (last[column_name(column, int(level), "lo")].to_numpy(),
                          last[column_name(column, int(level), "hi")].to_numpy()) for level in forecaster.half_widths}
    draw_forecast(path, dates.iloc[-shown:], values[-shown:], future.to_numpy(), prediction.to_numpy(),
                  None if truth is None else truth.to_numpy(), lay.target, title, bands)
