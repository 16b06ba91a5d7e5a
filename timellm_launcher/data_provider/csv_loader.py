"""Read a forecasting CSV and refuse what would silently corrupt training, with one clear line each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.seasonality import sampling_step


@dataclass
class Series:
    """A validated multivariate series: dates, float values, column names (target last)."""

    dates: pd.DatetimeIndex
    values: np.ndarray  # [T, C] float64
    columns: list[str]
    date_column: str
    file_columns: list[str]  # the variables as the file orders them (a forecast's input must repeat them)
    notes: list[str] = field(default_factory=list)  # what was done to read the file, for the run to print


def read_series(path: Path, *, date_column: str | None, target: str, features: str, fillna: str,
                drop_columns: tuple[str, ...] = ()) -> Series:
    """Columns kept: the target alone for S, else every variable with the target moved last."""
    return series_from_frame(read_frame(path), path, date_column=date_column, target=target, features=features,
                             fillna=fillna, drop_columns=drop_columns)


SEPARATORS = (",", ";", "\t", "|")


def read_frame(path: Path) -> pd.DataFrame:
    """The file as a table (the file-format part: existence, separator, parsing, encoding)."""
    if not path.is_file():
        raise UserError(f"data file not found: {path} (set --root_path/--data_path; see README 'Datasets')")
    try:
        return pd.read_csv(path, sep=separator(path))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text at {_undecodable(path)}; save the file as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None


def separator(path: Path) -> str:
    """The header line's most frequent of , ; tab | (a comma when it holds none of them)."""
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", errors="replace")
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _undecodable(path: Path) -> str:
    """Line and byte of the first bytes that are not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return f"line {line} (byte 0x{data[err.start]:02x})"
    return "an unknown position"


def row_label(source: Path | str, index: int) -> str:
    """A row as the user finds it: its line in a CSV file (the header is line 1), or its position in a frame."""
    return f"line {index + 2}" if isinstance(source, Path) else f"row {index}"


def series_from_frame(frame: pd.DataFrame, path: Path | str, *, date_column: str | None, target: str, features: str,
                      fillna: str, drop_columns: tuple[str, ...] = ()) -> Series:
    """Validate a table of dates and variables (the content part); `path` names it in errors."""
    if frame.shape[1] < 2:
        raise UserError(f"{path}: needs a date column followed by at least one variable")

    if frame.empty:
        raise UserError(f"{path}: has a header but no data rows")
    date_column = date_column or str(frame.columns[0])
    if date_column not in frame.columns:
        raise UserError(f"{path}: missing date column {date_column!r}")
    notes = []
    unnamed_empty = [c for c in frame.columns if str(c).startswith("Unnamed: ") and frame[c].isna().all()]
    if unnamed_empty:  # a separator at the end of every line makes a nameless, empty last column
        frame = frame.drop(columns=unnamed_empty)
        notes.append(f"{path}: dropped {len(unnamed_empty)} empty column(s) without a name (a separator at the end "
                     "of each line)")
    if pd.api.types.is_numeric_dtype(frame[date_column]):
        raise UserError(f"{path}: the first column {date_column!r} must hold dates, not numbers "
                        "(put a date/time column first)")
    mixed = mixed_date_formats(frame[date_column], path)
    dates = parse_dates(frame[date_column])
    if dates.isna().any():
        bad = frame[date_column][dates.isna()].iloc[0]
        raise UserError(f"{path}: {mixed}" if mixed else f"{path}: the first column {date_column!r} must hold dates; "
                        f"{int(dates.isna().sum())} values are not (e.g. {bad!r})")
    steps = np.diff(pd.DatetimeIndex(dates).asi8)
    if mixed:
        if (steps <= 0).any():
            raise UserError(f"{path}: {mixed}")
        notes.append(f"{path}: {mixed.split(';')[0]}; they were read in order, check that each means what you meant")
    if (steps <= 0).any():
        row = int(np.argmax(steps <= 0)) + 1
        how = "repeats the timestamp of" if steps[row - 1] == 0 else "comes before"
        raise UserError(f"{path}: dates must increase; {row_label(path, row)} ({dates.iloc[row]}) {how} the row "
                        f"before it ({dates.iloc[row - 1]}): sort the file by date and drop repeated timestamps")
    variables = frame.drop(columns=[date_column, *[c for c in drop_columns if c in frame.columns]])
    file_columns = [str(c) for c in variables.columns]

    if target not in variables.columns:
        raise UserError(f"{path}: target column {target!r} (--target) not found; "
                        f"columns: {', '.join(map(str, variables.columns))}")
    if features == "S":
        variables = variables[[target]]
    else:
        variables = variables[[c for c in variables.columns if c != target] + [target]]

    non_numeric = [str(c) for c in variables.columns if not pd.api.types.is_numeric_dtype(variables[c])]
    if non_numeric:
        commas = any(variables[c].astype(str).str.fullmatch(r"-?\d+,\d+").any() for c in non_numeric)
        raise UserError(f"{path}: non-numeric columns {', '.join(non_numeric)}; "
                        + ("they hold decimal commas: write decimal points" if commas
                           else "remove them or convert them to numbers"))

    values = variables.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {str(c): int(n) for c, n in zip(variables.columns, bad.sum(axis=0), strict=False) if n}
        empty = [c for c, n in counts.items() if n == len(values)]
        if empty:
            raise UserError(f"{path}: column(s) {', '.join(empty)} hold no finite value; --fillna cannot fill "
                            "them: drop them")
        if fillna == "none":
            listed = ", ".join(f"{c!r}: {n}" for c, n in counts.items())
            raise UserError(f"{path}: NaN/inf values in column(s) {listed}; "
                            "pass --fillna ffill or --fillna zero to fill them")
        values = _fill(values, bad, fillna)
    return Series(pd.DatetimeIndex(dates), values, [str(c) for c in variables.columns], date_column, file_columns,
                  notes)


def mixed_date_formats(column: pd.Series, source: Path | str) -> str:
    """'' when every date is written the same way (digits and separators of the date part); else a sentence naming
    the first two lines that disagree (pandas would read each by its own rule, so sorted dates can come out of
    order)."""
    text = column.astype(str).str.strip()
    shapes = text.str.split(r"[ T]", n=1, regex=True).str[0].str.replace(r"\d", "9", regex=True)
    if shapes.nunique() < 2:
        return ""
    first = shapes.iloc[0]
    other = int(np.argmax((shapes != first).to_numpy()))
    return (f"dates are written in more than one format: {row_label(source, 0)} {text.iloc[0]!r} and "
            f"{row_label(source, other)} {text.iloc[other]!r}; write every date the same way (e.g. YYYY-MM-DD hh:mm)")


AMBIGUOUS_DATE = r"\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:[ T].*)?"  # 01/02/1950: 1 February or 2 January?


def parse_dates(column: pd.Series) -> pd.Series:
    """The date column as timestamps (NaT where a cell is no date). Offsets that change within the column (daylight
    saving time) become one timeline in UTC. Dates written dd/mm or mm/dd are read the way that makes them increase
    at a regular step; when only one reading does, that one (pandas alone would take mm/dd, then fall back to dd/mm
    cell by cell)."""
    month_first = _to_datetime(column, dayfirst=False)
    if not column.astype(str).str.fullmatch(AMBIGUOUS_DATE).all():
        return month_first
    day_first = _to_datetime(column, dayfirst=True)
    ranked = sorted([month_first, day_first], key=lambda d: (not d.notna().all(), not _is_regular(d)))
    return ranked[0]


def _to_datetime(column: pd.Series, *, dayfirst: bool) -> pd.Series:
    try:
        return pd.to_datetime(column, errors="coerce", format="mixed", dayfirst=dayfirst)
    except ValueError:  # mixed UTC offsets
        return pd.to_datetime(column, errors="coerce", format="mixed", dayfirst=dayfirst, utc=True)


def _is_regular(dates: pd.Series) -> bool:
    """Every date present and one sampling step after the one before."""
    index = pd.DatetimeIndex(dates.dropna())
    if len(index) < 3 or len(index) != len(dates) or not index.is_monotonic_increasing:
        return False
    return sampling_step(index)[1]


def _fill(values: np.ndarray, bad: np.ndarray, how: str) -> np.ndarray:
    values = values.copy()
    values[bad] = np.nan
    if how == "zero":
        return np.nan_to_num(values, nan=0.0)
    # ffill; values before the first finite one take that first value (bfill)
    filled = pd.DataFrame(values).ffill().bfill().to_numpy()
    return np.nan_to_num(filled, nan=0.0)
