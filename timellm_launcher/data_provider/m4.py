"""M4 short-term forecasting data (`--data m4 --seasonal_patterns P`): files, windows, splits.

Files under --root_path (or its m4/ subfolder), either the Time-Series-Library layout (M4-info.csv with
columns M4id and SP, plus training.npz / test.npz holding one array per series in M4-info's order) or the
competition CSVs (<P>-train.csv and <P>-test.csv, optionally in Train/ and Test/: an id column, then the
values, NaN-padded on the right).

Windows: validation forecasts the last horizon of each training series from the values before it, and that
horizon is held out of training. Training cuts each series (without its validation horizon) at a random point
among its last history_size x horizon admissible cut points each time the series is drawn (as the
Time-Series-Library does), but only where the whole horizon lies inside the history, so no target is padded;
a series too short to keep one input value before such a horizon is validated and tested but not trained on.
Inputs shorter than seq_len are padded on the left with the first observed value (the library pads zeros, which
RevIN would read as a level shift); `x_mask` marks the observed steps. The test forecasts the test horizon from
the end of the whole training series (the library validates on the test set instead).

Naive2, the benchmark OWA is relative to, is read from `submission-Naive2.csv` (the competition's own
forecasts, as the Time-Series-Library ships them) when that file is in the folder, else computed
(engine/evaluate/m4_metrics.py).
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy._core import multiarray as np_multiarray
from torch.utils.data import Dataset

from timellm_launcher.core.errors import UserError


@dataclass(frozen=True)
class M4Pattern:
    horizon: int
    seasonality: int  # periods per year / cycle, for MASE and the Naive2 seasonality test
    history_size: float  # training cut points: the last history_size x horizon of each series


PATTERNS: dict[str, M4Pattern] = {
    "Yearly": M4Pattern(6, 1, 1.5),
    "Quarterly": M4Pattern(8, 4, 1.5),
    "Monthly": M4Pattern(18, 12, 1.5),
    "Weekly": M4Pattern(13, 1, 10.0),
    "Daily": M4Pattern(14, 1, 10.0),
    "Hourly": M4Pattern(48, 24, 10.0),
}

DESCRIPTION = ("The M4 competition data holds 100,000 series from business, finance, demography, industry and "
               "economics, sampled yearly, quarterly, monthly, weekly, daily or hourly.")


def m4_folder(root_path: str) -> Path:
    root = Path(root_path)
    for folder in (root / "m4", root):
        if (folder / "M4-info.csv").is_file() or any(folder.glob("*-train.csv")) \
                or (folder / "Train").is_dir():
            return folder
    raise UserError(f"--data m4: no M4 files under --root_path {root_path} (expected m4/M4-info.csv with "
                    "training.npz/test.npz, or <Pattern>-train.csv/<Pattern>-test.csv)")


def _read_csv_series(path: Path) -> list[np.ndarray]:
    frame = pd.read_csv(path)
    values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    return [row[~np.isnan(row)] for row in values]


# What a Time-Series-Library training.npz/test.npz (numpy's `ndarray.dump` of an object array of float arrays) needs
# to be rebuilt, and nothing else: arrays, dtypes, and the byte strings protocol 2 encodes through _codecs.
_ARRAY_GLOBALS = {("numpy._core.multiarray", "_reconstruct"): np_multiarray._reconstruct,
                  ("numpy.core.multiarray", "_reconstruct"): np_multiarray._reconstruct,
                  ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                  ("_codecs", "encode"): codecs.encode}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays only: any other class or function named in the file is refused before it is
    touched, so a planted payload cannot run."""

    def find_class(self, module: str, name: str):
        found = _ARRAY_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which an M4 array file never needs")
        return found


def _load_npz(path: Path) -> np.ndarray:
    """A TSLib M4 file: a pickled object array (read by _ArrayUnpickler) or a plain .npy/.npz of numbers."""
    try:
        with open(path, "rb") as handle:
            if handle.read(1) == b"\x80":  # a pickle (protocol 2 and later)
                handle.seek(0)
                loaded = _ArrayUnpickler(handle).load()
            else:
                loaded = np.load(path, allow_pickle=False)
                if isinstance(loaded, np.lib.npyio.NpzFile):
                    loaded = loaded[loaded.files[0]]
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, TypeError, AttributeError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UserError(f"{path}: not an M4 array file ({reason})") from None
    if not isinstance(loaded, np.ndarray):
        raise UserError(f"{path}: holds a {type(loaded).__name__}, not an array of series")
    return loaded


def load_pattern(root_path: str, pattern: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str], Path]:
    """(training series, test horizons, series ids, folder) of one seasonal pattern, in file order."""
    folder = m4_folder(root_path)
    info, train_npz, test_npz = folder / "M4-info.csv", folder / "training.npz", folder / "test.npz"
    if info.is_file() and train_npz.is_file() and test_npz.is_file():
        info_frame = pd.read_csv(info)
        sp = info_frame["SP"].to_numpy()
        keep = np.flatnonzero(sp == pattern)
        ids = [str(i) for i in info_frame["M4id"].to_numpy()[keep]] if "M4id" in info_frame else []
        train_all, test_all = _load_npz(train_npz), _load_npz(test_npz)
        if len(train_all) != len(sp) or len(test_all) != len(sp):
            raise UserError(f"{folder}: training.npz/test.npz hold {len(train_all)}/{len(test_all)} series but "
                            f"M4-info.csv lists {len(sp)}")
        train = [np.asarray(train_all[i], dtype=np.float64) for i in keep]
        test = [np.asarray(test_all[i], dtype=np.float64) for i in keep]
    else:
        candidates = [(folder / f"{pattern}-train.csv", folder / f"{pattern}-test.csv"),
                      (folder / "Train" / f"{pattern}-train.csv", folder / "Test" / f"{pattern}-test.csv")]
        found = next(((a, b) for a, b in candidates if a.is_file() and b.is_file()), None)
        if found is None:
            raise UserError(f"--data m4 --seasonal_patterns {pattern}: neither M4-info.csv + training.npz + "
                            f"test.npz nor {pattern}-train.csv + {pattern}-test.csv found in {folder}")
        train, test = _read_csv_series(found[0]), _read_csv_series(found[1])
        ids = [str(i) for i in pd.read_csv(found[0], usecols=[0]).iloc[:, 0]]
    if not train:
        raise UserError(f"{folder}: no {pattern} series")
    if len(train) != len(test):
        raise UserError(f"{folder}: {len(train)} {pattern} training series but {len(test)} test series")
    horizon = PATTERNS[pattern].horizon
    short = [i for i, t in enumerate(test) if len(t) != horizon]
    if short:
        raise UserError(f"{folder}: {len(short)} {pattern} test series do not hold {horizon} values "
                        f"(e.g. series {short[0]})")
    too_short = [i for i, s in enumerate(train) if len(s) <= horizon]
    if too_short:
        raise UserError(f"{folder}: {len(too_short)} {pattern} training series have at most {horizon} values "
                        f"(e.g. series {too_short[0]}); each needs more than one horizon")
    return train, test, ids, folder


def official_naive2(folder: Path, ids: list[str], horizon: int) -> np.ndarray | None:
    """The competition's Naive2 forecasts [series, horizon] of these series, when submission-Naive2.csv is there."""
    path = folder / "submission-Naive2.csv"
    if not path.is_file() or not ids:
        return None
    frame = pd.read_csv(path, index_col=0)
    missing = [i for i in ids if i not in frame.index]
    if missing:
        raise UserError(f"{path}: no Naive2 forecast for {len(missing)} series (e.g. {missing[0]}); remove the file "
                        "to compute Naive2 instead")
    values = frame.loc[ids].to_numpy(dtype=np.float64)[:, :horizon]
    if np.isnan(values).any():
        raise UserError(f"{path}: Naive2 forecasts shorter than the horizon {horizon}")
    return values


def left_window(history: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The last seq_len values, left-padded with the first one; mask 1 where observed."""
    window = history[-seq_len:]
    pad = seq_len - len(window)
    mask = np.concatenate([np.zeros(pad), np.ones(len(window))])
    return np.concatenate([np.full(pad, window[0]), window]), mask


def _batch(xs: list[np.ndarray], ys: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, torch.Tensor]:
    return {"x": torch.tensor(np.stack(xs), dtype=torch.float32).unsqueeze(-1),
            "y": torch.tensor(np.stack(ys), dtype=torch.float32).unsqueeze(-1),
            "x_mask": torch.tensor(np.stack(masks), dtype=torch.float32)}


class M4TrainWindows(Dataset):
    """One sample per series per epoch, cut at a random admissible point each time it is drawn."""

    def __init__(self, series: list[np.ndarray], seq_len: int, pred_len: int, history_size: float) -> None:
        """`series`: the histories training may see (validation horizons already removed); those without room for
        one input value before a horizon are left out."""
        self.series = [s for s in series if len(s) > pred_len]
        self.seq_len, self.pred_len = seq_len, pred_len
        self.limit = int(history_size * pred_len)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        xs, ys, masks = [], [], []
        for i in indices:
            s = self.series[i]
            last = len(s) - self.pred_len  # the latest cut that keeps the whole horizon
            cut = int(torch.randint(max(1, last - self.limit + 1), last + 1, ()).item())
            x, mask = left_window(s[:cut], self.seq_len)
            xs.append(x), ys.append(s[cut:cut + self.pred_len]), masks.append(mask)
        return _batch(xs, ys, masks)


class M4FixedWindows(Dataset):
    """One fixed (input, horizon) pair per series: validation and test."""

    def __init__(self, histories: list[np.ndarray], targets: list[np.ndarray], seq_len: int) -> None:
        windows = [left_window(h, seq_len) for h in histories]
        self.batch = _batch([w for w, _ in windows], targets, [m for _, m in windows])

    def __len__(self) -> int:
        return len(self.batch["x"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.batch.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[index] for k, v in self.batch.items()}


@dataclass
class M4Data:
    """The data builder's result for --data m4 (same role as DataBundle for the CSV datasets)."""

    path: Path
    pattern: str
    train_series: list[np.ndarray]  # the full histories: MASE scale and Naive2 for the test
    test_series: list[np.ndarray]
    seasonality: int
    description: str
    datasets: dict[str, Dataset]
    naive2: np.ndarray | None = None  # the competition's Naive2 forecasts of the test horizons, when shipped
    columns: tuple[str, ...] = ("value",)
    n_vars: int = 1

    def summary(self) -> dict:
        return {"path": str(self.path), "seasonal_pattern": self.pattern, "series": len(self.train_series),
                "naive2": "submission-Naive2.csv" if self.naive2 is not None else "computed",
                "horizon": len(self.test_series[0]), "seasonality": self.seasonality,
                "samples": {s: len(d) for s, d in self.datasets.items()}}


def build_m4_data(root_path: str, pattern: str, seq_len: int, pred_len: int) -> M4Data:
    spec = PATTERNS[pattern]
    train, test, ids, folder = load_pattern(root_path, pattern)
    datasets = {
        "train": M4TrainWindows([s[:-pred_len] for s in train], seq_len, pred_len, spec.history_size),
        "val": M4FixedWindows([s[:-pred_len] for s in train], [s[-pred_len:] for s in train], seq_len),
        "test": M4FixedWindows(train, test, seq_len),
    }
    return M4Data(path=folder, pattern=pattern, train_series=train, test_series=test, seasonality=spec.seasonality,
                  description=f"{DESCRIPTION} This subset is {pattern.lower()}.",
                  datasets=datasets, naive2=official_naive2(folder, ids, spec.horizon))
