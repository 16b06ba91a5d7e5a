"""The calendar of a series: its sampling step as a pandas frequency (forecast timestamps continue it) and its
season for the seasonal naive baseline: one day of sub-daily data, one week of daily data (five days of
business-day data), one year of weekly, monthly or quarterly data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

DAY = pd.Timedelta(days=1)


def season_from_dates(dates: pd.DatetimeIndex) -> int:
    """Steps per season, or 1 when the step has no natural cycle (yearly data, irregular steps)."""
    if len(dates) < 3:
        return 1
    step = pd.Series(dates).diff().dropna().median()
    if step <= pd.Timedelta(0):
        return 1
    if step < DAY:
        per_day = DAY / step
        return int(round(per_day)) if abs(per_day - round(per_day)) < 1e-6 else 1
    days = step / DAY
    if days == 1:
        weekdays = set(dates.dayofweek)
        return 5 if weekdays <= {0, 1, 2, 3, 4} else 7
    if days == 7:
        return 52
    if 28 <= days <= 31:
        return 12
    if 89 <= days <= 92:
        return 4
    return 1


def sampling_step(dates: pd.DatetimeIndex) -> tuple[str, bool]:
    """(frequency, whether every row follows the previous one by exactly that step). Calendar steps (month starts,
    business days, ...) come from pandas' inference; a fixed day of every k-th month that pandas has no alias for
    is "months=k"; an irregular series gets its median step."""
    if len(dates) < 3:
        raise ValueError("a sampling step needs at least 3 timestamps")
    inferred = pd.infer_freq(dates)
    if inferred is not None:
        return to_offset(inferred).freqstr, True
    months = _month_step(dates)
    if months:
        return f"months={months}", True
    step = to_offset(pd.Series(dates).diff().dropna().median())
    return step.freqstr, bool(first_off_step(dates, step.freqstr) is None)


def _month_step(dates: pd.DatetimeIndex) -> int:
    """k when every date falls on the same day and time of every k-th month, else 0."""
    time_of_day = dates - dates.normalize()
    same_day = (dates.day == dates[0].day).all() and (time_of_day == time_of_day[0]).all()
    steps = np.diff(dates.year * 12 + dates.month)
    return int(steps[0]) if same_day and steps[0] > 0 and (steps == steps[0]).all() else 0


def offset(freq: str) -> pd.DateOffset:
    """The pandas offset of a frequency sampling_step wrote."""
    if freq.startswith("months="):
        return pd.DateOffset(months=int(freq.removeprefix("months=")))
    return to_offset(freq)


def is_frequency(freq: object) -> bool:
    """Whether `freq` is a frequency `offset` reads (results.json is editable: check before use)."""
    try:
        offset(freq)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def first_off_step(dates: pd.DatetimeIndex, freq: str) -> int | None:
    """Index of the first timestamp that does not follow its predecessor by one `freq` step, or None."""
    if len(dates) < 2:
        return None
    expected = pd.date_range(dates[0], periods=len(dates), freq=offset(freq))
    off = (dates != expected).nonzero()[0]
    return int(off[0]) if len(off) else None


def future_dates(dates: pd.DatetimeIndex, freq: str, count: int) -> pd.DatetimeIndex:
    """`count` timestamps after the last one, one `freq` step apart."""
    return pd.date_range(dates[-1], periods=count + 1, freq=offset(freq))[1:]
