"""Calendar features in [-0.5, 0.5], chosen by `--freq` as in the Time-Series-Library ("timeF")."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from engine.errors import UserError

_FEATURES = {
    "second": lambda i: i.second / 59.0 - 0.5,
    "minute": lambda i: i.minute / 59.0 - 0.5,
    "hour": lambda i: i.hour / 23.0 - 0.5,
    "day_of_week": lambda i: i.dayofweek / 6.0 - 0.5,
    "day_of_month": lambda i: (i.day - 1) / 30.0 - 0.5,
    "day_of_year": lambda i: (i.dayofyear - 1) / 365.0 - 0.5,
    "month": lambda i: (i.month - 1) / 11.0 - 0.5,
    "week_of_year": lambda i: (i.isocalendar().week.to_numpy() - 1) / 52.0 - 0.5,
}

_BY_UNIT = {
    "s": ["second", "minute", "hour", "day_of_week", "day_of_month", "day_of_year"],
    "t": ["minute", "hour", "day_of_week", "day_of_month", "day_of_year"],
    "h": ["hour", "day_of_week", "day_of_month", "day_of_year"],
    "d": ["day_of_week", "day_of_month", "day_of_year"],
    "w": ["day_of_month", "week_of_year"],
    "m": ["month"],
}
_ALIASES = {"s": "s", "sec": "s", "t": "t", "min": "t", "h": "h", "d": "d", "b": "d", "w": "w",
            "m": "m", "ms": "m", "me": "m"}


def feature_names(freq: str) -> list[str]:
    match = re.fullmatch(r"\s*\d*\s*([a-zA-Z]+)\s*", freq or "")
    unit = _ALIASES.get(match.group(1).lower()) if match else None
    if unit is None:
        raise UserError(f"--freq {freq!r} is not understood; use s, t, h, d, b, w, m or e.g. 15min, 30min, 4h")
    return _BY_UNIT[unit]


def time_features(dates: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """[len(dates), n_features] float32."""
    return np.stack([np.asarray(_FEATURES[n](dates), dtype=np.float32) for n in feature_names(freq)], axis=1)
