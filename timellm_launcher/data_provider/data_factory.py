"""Options -> scaled splits -> window datasets -> DataLoaders. The one data builder every entry point calls."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.csv_loader import Series, read_series
from timellm_launcher.data_provider.long_format import Holdout, read_long, scaled_values, train_scaler
from timellm_launcher.data_provider.m4 import M4Data, build_m4_data
from timellm_launcher.data_provider.registry import describe, get_spec, resolve_path
from timellm_launcher.data_provider.seasonality import first_off_step, sampling_step, season_from_dates
from timellm_launcher.data_provider.splits import SPLITS, Borders, check_lengths, compute_borders
from timellm_launcher.data_provider.windows import PanelWindowDataset, WindowDataset, collate_batch


@dataclass(frozen=True)
class DataOptions:
    """What the data layer reads of a run's flags (same names as the flags)."""

    data: str = "vic_elec"
    root_path: str = "./dataset"
    data_path: str = ""
    features: str = "S"
    target: str = ""
    seq_len: int = 192
    pred_len: int = 48
    fillna: str = "none"
    percent: int = 100
    enc_in: int = 0
    season_length: int = 0
    seasonal_patterns: str = "Monthly"
    data_pretrain: str = ""
    data_path_pretrain: str = ""
    id_col: str = "unique_id"
    time_col: str = "ds"
    val_size: int = 0
    test_size: int = 0


@dataclass
class DataBundle:
    path: Path
    columns: list[str]
    n_vars: int  # variables a model sample holds (1 when channel-independent)
    borders: Borders | None  # None in long format, where each series is split by its own holdout
    mean: np.ndarray  # scaler fitted on the train split only: per column, or per series in long format
    std: np.ndarray
    description: str
    datasets: dict[str, WindowDataset]
    seasonality: int = 1  # for --loss MASE
    season_length: int = 1  # steps per season of the scored data, for the seasonal naive baseline
    test_data: DataBundle | None = None  # zero-shot: the dataset the test split comes from
    input: dict | None = None  # what a forecast of new data needs to read a file as this run did (input_record)
    notes: list[str] = dataclasses.field(default_factory=list)  # warnings about the file, printed once by the run
    series_ids: np.ndarray | None = None  # long format: the id of each series (the row of mean/std)

    def summary(self) -> dict:
        summary = {"path": str(self.path), "columns": self.columns, "n_vars": self.n_vars,
                   "samples": {s: len(d) for s, d in self.datasets.items()}}
        if self.borders is not None:
            summary["borders"] = {s: list(self.borders.of(s)) for s in SPLITS}
        if self.series_ids is not None:
            summary["series"] = len(self.series_ids)
        if self.test_data is not None:
            summary["test_data"] = {k: v for k, v in self.test_data.summary().items() if k != "samples"}
        scored = self.test_data or self
        if scored.input is not None:
            summary["input"] = scored.input
        return summary


def input_record(opts: DataOptions, series: Series, target: str, drop_columns: tuple[str, ...], mean: np.ndarray,
                 std: np.ndarray, season_length: int) -> dict:
    """The file's layout, its sampling step and the train-split scaler: with the run's flags, everything
    forecast.py needs to read new data exactly as training read this file."""
    freq, regular = sampling_step(series.dates) if len(series.dates) >= 3 else ("", False)
    return {"date_column": series.date_column, "file_columns": series.file_columns, "columns": series.columns,
            "target": target, "features": opts.features, "drop_columns": list(drop_columns), "freq": freq,
            "regular": regular, "season_length": season_length, "fillna": opts.fillna,
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std]}


def build_data(opts: DataOptions) -> DataBundle | M4Data:
    """The datasets of a run: M4 (--data m4), zero-shot (--data_pretrain) or one CSV."""
    if opts.data == "m4":
        return build_m4_data(opts.root_path, opts.seasonal_patterns, opts.seq_len, opts.pred_len)
    if opts.data_pretrain:
        return build_zero_shot(opts)
    if opts.data == "long":
        return build_long_data(opts)
    return build_csv_data(opts)


def build_zero_shot(opts: DataOptions) -> DataBundle:
    """Train and validate on --data_pretrain, test on --data. Each dataset is standardised with the scaler
    of its own train split, as the reference Time-LLM's run_pretrain.py does (one Dataset object per file)."""
    if opts.data_pretrain in ("custom", "m4") and not opts.data_path_pretrain:
        raise UserError(f"--data_pretrain {opts.data_pretrain} needs --data_path_pretrain (a CSV under --root_path)")
    if {opts.data_pretrain, opts.data} & {"m4", "long"}:
        raise UserError("zero-shot (--data_pretrain) works between wide long-term forecasting CSV datasets, not m4 "
                        "or long")
    source_opts = dataclasses.replace(opts, data=opts.data_pretrain, data_path=opts.data_path_pretrain, enc_in=0,
                                      target="" if opts.data_pretrain != opts.data else opts.target)
    source = build_csv_data(source_opts)
    target = build_csv_data(opts)
    return dataclasses.replace(source, datasets={"train": source.datasets["train"], "val": source.datasets["val"],
                                                 "test": target.datasets["test"]}, test_data=target,
                               season_length=target.season_length)


def build_csv_data(opts: DataOptions) -> DataBundle:
    spec = get_spec(opts.data)
    path = resolve_path(opts.data, opts.root_path, opts.data_path)
    target = opts.target or spec.target
    is_vic_elec = opts.data == "vic_elec"
    drop_columns = ("Date", "Holiday") if is_vic_elec else ()
    series = read_series(path, date_column="Time" if is_vic_elec else None, target=target,
                         features=opts.features, fillna=opts.fillna, drop_columns=drop_columns)
    n_columns = series.values.shape[1]
    if opts.enc_in and opts.enc_in != n_columns:
        raise UserError(f"--enc_in {opts.enc_in} does not match the {n_columns} variable(s) of {path.name} "
                        f"with --features {opts.features}; pass --enc_in 0 to read it from the data")

    borders = compute_borders(spec.split, len(series.values), opts.seq_len, opts.percent)
    check_lengths(borders, opts.seq_len, opts.pred_len)
    lo, hi = borders.scaler_rows
    with np.errstate(over="ignore", invalid="ignore"):
        mean = series.values[lo:hi].mean(axis=0)
        std = series.values[lo:hi].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant column stays finite
    scaled = standardise(series.values, mean, std, series.columns, path)

    channel_independent = opts.features != "MS"
    datasets = {}
    for split in SPLITS:
        a, b = borders.of(split)
        datasets[split] = WindowDataset(scaled[a:b], opts.seq_len, opts.pred_len,
                                        channel_independent=channel_independent, target_only=opts.features == "MS")
    season_length = opts.season_length or season_from_dates(series.dates)
    record = input_record(opts, series, target, drop_columns, mean, std, season_length)
    return DataBundle(path=path, columns=series.columns, n_vars=1 if channel_independent else n_columns,
                      borders=borders, mean=mean, std=std, description=describe(opts.data, path),
                      datasets=datasets, season_length=season_length, input=record,
                      notes=[*series.notes, *irregular_note(path, series.dates, record["freq"], record["regular"])])


def build_long_data(opts: DataOptions) -> DataBundle:
    """Many series in long format, windows and splits per series (data_provider/long_format.py)."""
    if opts.features == "MS":
        raise UserError("--data long reads one target per series (--features S); MS needs the wide format")
    path = resolve_path(opts.data, opts.root_path, opts.data_path)
    target = opts.target or get_spec("long").target
    panel = read_long(path, id_col=opts.id_col, time_col=opts.time_col, target=target, fillna=opts.fillna)
    holdout = Holdout(opts.seq_len, opts.pred_len, opts.val_size or opts.pred_len, opts.test_size or opts.pred_len,
                      opts.percent)
    if holdout.val < opts.pred_len or holdout.test < opts.pred_len:
        raise UserError(f"--val_size and --test_size must be at least --pred_len {opts.pred_len} (or 0: one "
                        f"horizon), got {opts.val_size} and {opts.test_size}")
    total = len(panel.ids)
    keep = panel.lengths >= holdout.min_length
    notes = list(panel.notes)
    if not keep.any():
        raise UserError(f"{path}: none of its {total:,} series has the {holdout.min_length} points a series needs "
                        f"(--seq_len {opts.seq_len} + --pred_len {opts.pred_len} + validation {holdout.val} + test "
                        f"{holdout.test}); the longest has {int(panel.lengths.max())}")
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum()):,} of {total:,} series shorter than {holdout.min_length} points "
                     f"(seq_len {opts.seq_len} + pred_len {opts.pred_len} + validation {holdout.val} + test "
                     f"{holdout.test})")
        panel = panel.select(keep)
    mean, std = train_scaler(panel, holdout.val, holdout.test)
    values = torch.from_numpy(scaled_values(panel, mean, std, path))
    datasets = {split: PanelWindowDataset(values, starts, series, opts.seq_len, opts.pred_len)
                for split, (starts, series) in holdout.split_starts(panel.offsets).items()}
    freq, uneven, season = panel.calendar()
    if uneven:
        notes.append(f"warning: {uneven:,} series of {path} do not step every {freq}; windows run over their gaps "
                     "as if the rows were consecutive")
    season_length = opts.season_length or season
    record = {"format": "long", "id_col": opts.id_col, "time_col": opts.time_col, "target": target,
              "features": "S", "freq": freq, "regular": not uneven, "season_length": season_length,
              "fillna": opts.fillna, "val_size": holdout.val, "test_size": holdout.test,
              "series": {"ids": [str(i) for i in panel.ids], "mean": [float(v) for v in mean],
                         "std": [float(v) for v in std]}}
    return DataBundle(path=path, columns=[target], n_vars=1, borders=None, mean=mean, std=std,
                      description=describe(opts.data, path), datasets=datasets, season_length=season_length,
                      input=record, notes=notes, series_ids=panel.ids)


def irregular_note(path: Path, dates: pd.DatetimeIndex, freq: str, regular: bool) -> list[str]:
    """A warning when the dates do not step evenly: windows then span gaps as if the rows were consecutive."""
    if regular or not freq:
        return []
    row = first_off_step(dates, freq)
    if row is None:
        return []
    return [f"warning: {path} is not evenly spaced: every {freq} up to line {row + 1} ({dates[row - 1]}), then "
            f"line {row + 2} ({dates[row]}); windows run over such gaps as if the rows were consecutive "
            "(fill the missing rows for a regular series)"]


def standardise(values: np.ndarray, mean: np.ndarray, std: np.ndarray, columns: list[str], source) -> np.ndarray:
    """(values - mean) / std, refusing columns whose train-split statistics overflow or whose standardised values
    leave float32 (the model's precision): a metric on such data would be silently wrong."""
    broken = [c for c, m, s in zip(columns, mean, std, strict=True) if not (np.isfinite(m) and np.isfinite(s))]
    if broken:
        raise UserError(f"{source}: column(s) {', '.join(broken)} overflow when standardised with the train split's "
                        "mean and standard deviation (values too large for float64 arithmetic); rescale them")
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (values - mean) / std
        fits = np.isfinite(scaled.astype(np.float32)).all(axis=0)
    if not fits.all():
        listed = ", ".join(c for c, ok in zip(columns, fits, strict=True) if not ok)
        raise UserError(f"{source}: column(s) {listed} hold values too far from the train split's range to "
                        "represent once standardised (beyond float32); check them for corrupt values")
    return scaled


def fingerprint(data: DataBundle | M4Data) -> str:
    """A digest of the values a run trains and is scored on: the same data under another path gives the same one."""
    digest = hashlib.sha256()
    arrays = [*data.train_series, *data.test_series] if isinstance(data, M4Data) else \
        [d.values.numpy() for d in data.datasets.values()] + \
        [d.starts.numpy() for d in data.datasets.values() if isinstance(d, PanelWindowDataset)]
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def build_loaders(data: DataBundle | M4Data, *, batch_size: int, eval_batch_size: int, num_workers: int = 0,
                  prefetch_factor: int = 2) -> dict[str, DataLoader]:
    """Training drops its ragged last batch (as the benchmarks do); validation and test keep every sample."""
    if len(data.datasets["train"]) < batch_size:
        raise UserError(f"--batch_size {batch_size} is larger than the {len(data.datasets['train'])} "
                        "training samples; lower it")
    # pinned host batches let the copy to the GPU run asynchronously (the accelerator copies non_blocking)
    common = {"num_workers": num_workers, "collate_fn": collate_batch,
              "pin_memory": torch.cuda.is_available(), "persistent_workers": num_workers > 0,
              "prefetch_factor": prefetch_factor if num_workers > 0 else None}
    return {
        "train": DataLoader(data.datasets["train"], batch_size=batch_size, shuffle=True, drop_last=True, **common),
        "val": DataLoader(data.datasets["val"], batch_size=eval_batch_size, shuffle=False, drop_last=False,
                          **common),
        "test": DataLoader(data.datasets["test"], batch_size=eval_batch_size, shuffle=False, drop_last=False,
                           **common),
    }
