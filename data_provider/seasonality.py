"""The season of a series from its sampling step, for the seasonal naive baseline: one day of sub-daily data, one
week of daily data (five days of business-day data), one year of weekly, monthly or quarterly data."""

from __future__ import annotations

import pandas as pd

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
