"""Generated stand-ins for the benchmark files, in their real layouts, for smoke runs and tests.

    python -m timellm_launcher.data_provider.synthetic ETTh1 OUT_DIR # OUT_DIR/ETTh1.csv (date + 7 columns, 17,420 rows)
    python -m timellm_launcher.data_provider.synthetic m4 OUT_DIR    # OUT_DIR/m4/M4-info.csv, training.npz, test.npz
    python -m timellm_launcher.data_provider.synthetic long OUT_DIR  # OUT_DIR/long.parquet (10,000 series, 200-400 h)

The values are daily/weekly cycles with a trend and noise: learnable, never a stand-in for real results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from timellm_launcher.data_provider.m4 import PATTERNS

_ETT = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
# (file name, columns besides the date, rows, pandas frequency) of each benchmark file
LAYOUTS: dict[str, tuple[str, list[str], int, str]] = {
    "ETTh1": ("ETTh1.csv", _ETT, 17420, "h"),
    "ETTh2": ("ETTh2.csv", _ETT, 17420, "h"),
    "ETTm1": ("ETTm1.csv", _ETT, 69680, "15min"),
    "ETTm2": ("ETTm2.csv", _ETT, 69680, "15min"),
    "weather": ("weather.csv", [f"w{i}" for i in range(20)] + ["OT"], 2000, "10min"),
    "electricity": ("electricity.csv", [str(i) for i in range(320)] + ["OT"], 1000, "h"),
    "traffic": ("traffic.csv", [str(i) for i in range(861)] + ["OT"], 1000, "h"),
    "exchange_rate": ("exchange_rate.csv", [str(i) for i in range(7)] + ["OT"], 2000, "D"),
    "national_illness": ("national_illness.csv", ["% WEIGHTED ILI", "%UNWEIGHTED ILI", "AGE 0-4", "AGE 5-24",
                                                  "ILITOTAL", "NUM. OF PROVIDERS"] + ["OT"], 966, "W"),
}


def synthetic_frame(rows: int, columns: list[str], freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """Daily and weekly cycles, a slow trend and noise: learnable, like the real benchmarks (the tests' data)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    data = {"date": pd.date_range("2016-07-01", periods=rows, freq=freq).strftime("%Y-%m-%d %H:%M:%S")}
    for i, name in enumerate(columns):
        data[name] = (np.sin(2 * np.pi * t / 24 + i) * (2 + i) + np.sin(2 * np.pi * t / 168) + 0.001 * t
                      + rng.normal(0, 0.3, rows))
    return pd.DataFrame(data)


def cyclic_frame(rows: int, columns: list[str], freq: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    data: dict[str, np.ndarray] = {
        "date": pd.date_range("2016-07-01", periods=rows, freq=freq).strftime("%Y-%m-%d %H:%M:%S").to_numpy()}
    waves = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168) + 0.001 * t
    for i, name in enumerate(columns):
        data[name] = (2 + i % 5) * np.roll(waves, i) + rng.normal(0, 0.3, rows)
    return pd.DataFrame(data)


def long_panel(series: int, min_length: int, max_length: int, freq: str = "h", seed: int = 0,
               noise: float = 0.3) -> pd.DataFrame:
    """Many series in long format (unique_id, ds, y) of unequal lengths at a fixed step (h, 15min, D, ...): each a
    daily cycle of its own phase, amplitude and level, plus Gaussian noise of `noise` times its amplitude. Array
    operations only (no loop over series)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=series)
    owner = np.repeat(np.arange(series), lengths)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    phase, amplitude = rng.uniform(0, 24, series), rng.uniform(1, 10, series)
    level, trend = rng.uniform(-50, 50, series), rng.normal(0, 0.01, series)
    cycle = np.sin(2 * np.pi * (step + phase[owner]) / 24) + 0.5 * np.sin(2 * np.pi * step / 168)
    y = level[owner] + amplitude[owner] * (cycle + trend[owner] * step + rng.normal(0, noise, len(owner)))
    starts = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 500, series), unit="D")
    ds = pd.DatetimeIndex(starts[owner]) + pd.to_timedelta(step * pd.Timedelta(to_offset(freq)).value, unit="ns")
    width = len(str(series - 1))
    ids = np.char.add("s", np.char.zfill(np.arange(series).astype(str), width))
    return pd.DataFrame({"unique_id": ids[owner], "ds": ds, "y": y})


def write_benchmark(name: str, folder: Path, seed: int = 0) -> Path:
    file, columns, rows, freq = LAYOUTS[name]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    cyclic_frame(rows, columns, freq, seed).to_csv(path, index=False)
    return path


def m4_series(pattern: str, count: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Positive seasonal series with a trend; history lengths from 2 to 6 horizons (plus the test horizon)."""
    spec = PATTERNS[pattern]
    h, m = spec.horizon, max(spec.seasonality, 1)
    train, test = [], []
    for _ in range(count):
        n = int(rng.integers(2 * h + 1, 6 * h + 1)) + h
        t = np.arange(n)
        level = rng.uniform(100, 5000)
        season = 1 + (0.2 * np.sin(2 * np.pi * t / m) if m > 1 else 0)
        values = level * season * (1 + rng.uniform(-0.01, 0.03) * t / max(h, 1)) * rng.normal(1, 0.02, n)
        train.append(values[:-h]), test.append(values[-h:])
    return train, test


def write_m4(folder: Path, per_pattern: int = 40, seed: int = 0, layout: str = "npz") -> Path:
    """folder/m4 in the Time-Series-Library layout (npz: M4-info.csv, training.npz, test.npz; pickled object
    arrays in M4-info's order) or the competition's CSVs (csv: <Pattern>-train.csv, <Pattern>-test.csv)."""
    rng = np.random.default_rng(seed)
    out = folder / "m4"
    out.mkdir(parents=True, exist_ok=True)
    ids, sps, trains, tests = [], [], [], []
    for pattern in PATTERNS:
        train, test = m4_series(pattern, per_pattern, rng)
        names = [f"{pattern[0]}{i + 1}" for i in range(per_pattern)]
        if layout == "csv":
            for rows, suffix in ((train, "train"), (test, "test")):
                width = max(len(r) for r in rows)
                table = np.full((len(rows), width), np.nan)
                for i, r in enumerate(rows):
                    table[i, :len(r)] = r
                frame = pd.DataFrame(table, columns=[f"V{j + 2}" for j in range(width)])
                frame.insert(0, "V1", names)
                frame.to_csv(out / f"{pattern}-{suffix}.csv", index=False)
        ids += names
        sps += [pattern] * per_pattern
        trains += train
        tests += test
    if layout == "npz":
        pd.DataFrame({"M4id": ids, "category": "Other", "Frequency": 1, "Horizon": 0, "SP": sps,
                      "StartingDate": "1990-01-01 00:00:00"}).to_csv(out / "M4-info.csv", index=False)
        for name, rows in (("training.npz", trains), ("test.npz", tests)):
            array = np.empty(len(rows), dtype=object)
            array[:] = rows
            with open(out / name, "wb") as handle:
                array.dump(handle)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a generated benchmark file in its real layout.")
    parser.add_argument("name", choices=[*LAYOUTS, "m4", "long"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--series", type=int, default=10_000, help="long: how many series")
    parser.add_argument("--min_length", type=int, default=200, help="long: shortest series")
    parser.add_argument("--max_length", type=int, default=400, help="long: longest series")
    args = parser.parse_args()
    if args.name == "long":
        args.folder.mkdir(parents=True, exist_ok=True)
        path = args.folder / "long.parquet"
        long_panel(args.series, args.min_length, args.max_length).to_parquet(path, index=False)
    else:
        path = write_m4(args.folder) if args.name == "m4" else write_benchmark(args.name, args.folder)
    print(path)


if __name__ == "__main__":
    main()
