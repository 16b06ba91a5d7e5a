"""Many series in long format (`unique_id, ds, y`, the layout neuralforecast and statsforecast share), read into one
array with row offsets per series, checked, and held out per series: each series' last `test_size` points are its
test targets, the `val_size` before them its validation targets, the rest its training part (the scaler's rows).

Every step is an array operation over all series at once (sorting, checks, scaling, window starts): no Python loop
over series (python -m benchmarks.long_format times 10,000 series beside a wide table of the same points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.csv_loader import parse_dates, read_frame
from timellm_launcher.data_provider.seasonality import sampling_step, season_from_dates
from timellm_launcher.data_provider.windows import concat_ranges

PARQUET = (".parquet", ".pq")


@dataclass
class Panel:
    """Series sorted by id then date, concatenated: series k is rows offsets[k]:offsets[k + 1]."""

    ids: np.ndarray  # [series] str, sorted
    offsets: np.ndarray  # [series + 1] int64
    dates: pd.DatetimeIndex  # [rows]
    values: np.ndarray  # [rows] float64
    notes: list[str] = field(default_factory=list)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row_series(self) -> np.ndarray:
        """The series of every row."""
        return np.repeat(np.arange(len(self.ids)), self.lengths)

    def last_dates(self) -> pd.DatetimeIndex:
        return self.dates[self.offsets[1:] - 1]

    def select(self, keep: np.ndarray) -> Panel:
        """The series where `keep` is true, in the same order."""
        rows = np.repeat(keep, self.lengths)
        lengths = self.lengths[keep]
        return Panel(self.ids[keep], np.concatenate([[0], np.cumsum(lengths)]), self.dates[rows], self.values[rows],
                     list(self.notes))

    def calendar(self) -> tuple[str, int, int]:
        """(sampling step, how many series do not step evenly by it, season length), read from the longest series;
        a fixed step (hours, days, ...) is checked on every series' steps at once."""
        longest = int(np.argmax(self.lengths))
        dates = self.dates[self.offsets[longest]:self.offsets[longest + 1]]
        if len(dates) < 3:
            return "", 0, 1
        freq, _ = sampling_step(dates)
        step = to_offset(freq)
        if not isinstance(step, Tick):
            return freq, 0, season_from_dates(dates)
        off = np.diff(self.dates.to_numpy()) != np.timedelta64(pd.Timedelta(step))
        off[self.offsets[1:-1] - 1] = False  # from one series' last row to the next series' first
        uneven = np.unique(np.searchsorted(self.offsets, np.flatnonzero(off), side="right") - 1)
        return freq, len(uneven), season_from_dates(dates)


def read_long(path: Path, *, id_col: str, time_col: str, target: str, fillna: str) -> Panel:
    """A long-format CSV or parquet file as a Panel."""
    if path.suffix.lower() in PARQUET:
        if not path.is_file():
            raise UserError(f"data file not found: {path} (set --root_path/--data_path)")
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None
    else:
        frame = read_frame(path)
    return panel_from_frame(frame, path, id_col=id_col, time_col=time_col, target=target, fillna=fillna)


def panel_from_frame(frame: pd.DataFrame, source: Path | str, *, id_col: str, time_col: str, target: str,
                     fillna: str) -> Panel:
    """Validate and sort a long table; `source` names it in errors."""
    missing = [c for c in (id_col, time_col, target) if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: long format needs columns {id_col!r}, {time_col!r} and {target!r} (--id_col, "
                        f"--time_col, --target); missing {', '.join(map(repr, missing))}; columns: "
                        f"{', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise UserError(f"{source}: has a header but no data rows")
    dates = _dates(frame[time_col], source, time_col)
    if not pd.api.types.is_numeric_dtype(frame[target]):
        raise UserError(f"{source}: column {target!r} (--target) must hold numbers")
    codes, ids = pd.factorize(frame[id_col].astype(str), sort=True)
    order = np.lexsort((dates.asi8, codes))
    codes, dates = codes[order], dates[order]
    values = frame[target].to_numpy(dtype=np.float64)[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(ids)))])
    steps = np.diff(dates.asi8)
    repeated = np.flatnonzero((steps == 0) & (codes[1:] == codes[:-1]))
    if len(repeated):
        row = repeated[0]
        raise UserError(f"{source}: series {ids[codes[row]]!r} has {len(repeated)} repeated timestamp(s), e.g. "
                        f"{dates[row]}; keep one row per {id_col} and {time_col}")
    panel = Panel(np.asarray(ids, dtype=object), offsets, dates, values)
    bad = ~np.isfinite(values)
    if bad.any():
        per_series = np.bincount(codes[bad], minlength=len(ids))
        if fillna == "none":
            hit = per_series > 0
            raise UserError(f"{source}: {int(bad.sum())} NaN/inf value(s) in {target!r} in {int(hit.sum())} series "
                            f"(e.g. {ids[int(np.argmax(hit))]!r}); pass --fillna ffill or --fillna zero to fill them")
        empty = per_series == panel.lengths
        if empty.any():
            panel.notes.append(f"{source}: dropped {int(empty.sum())} series without a finite value")
        panel.values = _fill(values, bad, codes, fillna)
        panel = panel.select(~empty)
    return panel


def _dates(column: pd.Series, source: Path | str, name: str) -> pd.DatetimeIndex:
    """The time column as timestamps: ISO 8601 text is read at C speed, other formats by the wide reader's rules."""
    if pd.api.types.is_numeric_dtype(column):
        raise UserError(f"{source}: column {name!r} (--time_col) must hold dates, not numbers")
    if pd.api.types.is_datetime64_any_dtype(column):
        dates = pd.DatetimeIndex(column)
    else:
        try:
            dates = pd.DatetimeIndex(pd.to_datetime(column, format="ISO8601"))
        except (ValueError, TypeError):
            dates = pd.DatetimeIndex(parse_dates(column))
    if dates.tz is not None:
        dates = dates.tz_convert("UTC").tz_localize(None)
    if dates.isna().any():
        bad = column[np.asarray(dates.isna())].iloc[0]
        raise UserError(f"{source}: column {name!r} (--time_col) must hold dates; {int(dates.isna().sum())} values "
                        f"are not (e.g. {bad!r})")
    return dates


def _fill(values: np.ndarray, bad: np.ndarray, codes: np.ndarray, how: str) -> np.ndarray:
    """NaN/inf filled within each series (never from a neighbouring series)."""
    values = np.where(bad, np.nan, values)
    if how == "zero":
        return np.nan_to_num(values, nan=0.0)
    grouped = pd.Series(values).groupby(codes)
    return grouped.ffill().groupby(codes).bfill().to_numpy()


@dataclass(frozen=True)
class Holdout:
    """Per-series split sizes, in points: the targets of the last `test` points are the test windows, the `val`
    points before them the validation windows."""

    seq_len: int
    pred_len: int
    val: int
    test: int
    percent: int = 100

    @property
    def min_length(self) -> int:
        """The shortest series that gives one window in every split."""
        return self.seq_len + self.pred_len + self.val + self.test

    def split_starts(self, offsets: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{split: (window starts, their series)} over every series (each at least min_length long)."""
        lengths = np.diff(offsets)
        first, window = offsets[:-1], self.seq_len + self.pred_len
        train_len = lengths - self.val - self.test
        train_windows = train_len - window + 1
        if self.percent < 100:
            train_windows = np.maximum(train_windows * self.percent // 100, 1)
        spans = {"train": (first, train_windows),
                 "val": (first + train_len - self.seq_len, np.full(len(lengths), self.val - self.pred_len + 1)),
                 "test": (first + lengths - self.test - self.seq_len,
                          np.full(len(lengths), self.test - self.pred_len + 1))}
        series = np.arange(len(lengths))
        return {split: (concat_ranges(start, count), np.repeat(series, count))
                for split, (start, count) in spans.items()}


def train_scaler(panel: Panel, val: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    """Each series' mean and standard deviation over its training part (1 where it is constant)."""
    train_len = panel.lengths - val - test
    rows = concat_ranges(panel.offsets[:-1], train_len)
    series = np.repeat(np.arange(len(panel.ids)), train_len)
    values = panel.values[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.bincount(series, weights=values, minlength=len(panel.ids)) / train_len
        var = np.bincount(series, weights=(values - mean[series]) ** 2, minlength=len(panel.ids)) / train_len
    std = np.sqrt(var)
    return mean, np.where(std > 0, std, 1.0)


def scaled_values(panel: Panel, mean: np.ndarray, std: np.ndarray, source: Path | str) -> np.ndarray:
    """[rows, 1] float32 of every series standardised by its own scaler, refusing series whose values overflow
    float64 arithmetic or leave float32 once scaled (their metrics would be silently wrong)."""
    rows = panel.row_series
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (panel.values - mean[rows]) / std[rows]
    bad = ~np.isfinite(scaled.astype(np.float32))
    if bad.any():
        first = panel.ids[rows[int(np.argmax(bad))]]
        raise UserError(f"{source}: {int(np.unique(rows[bad]).size)} series (e.g. {first!r}) hold values too large "
                        "or too far from their training part to standardise in float32; rescale or check them")
    return scaled.astype(np.float32)[:, None]
