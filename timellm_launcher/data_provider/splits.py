"""Train/val/test row borders, as the long-term forecasting benchmarks define them."""

from __future__ import annotations

from dataclasses import dataclass

from timellm_launcher.core.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Borders:
    """Row ranges [start, end) per split; val/test start seq_len early so their first target follows."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    scaler_rows: tuple[int, int]  # rows the scaler is fitted on (the full train split)

    def of(self, split: str) -> tuple[int, int]:
        return getattr(self, split)


def compute_borders(kind: str, n_rows: int, seq_len: int, percent: int = 100) -> Borders:
    if kind in ("ett_hour", "ett_minute"):
        per_month = 30 * 24 * (4 if kind == "ett_minute" else 1)
        train_end, val_end, test_end = 12 * per_month, 16 * per_month, 20 * per_month
        if n_rows < test_end:
            raise UserError(f"ETT data needs {test_end} rows for the 12/4/4-month split; the file has {n_rows}")
    elif kind == "ratio":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        train_end, val_end, test_end = n_train, n_rows - n_test, n_rows
    else:
        raise ValueError(kind)
    full_train = (0, train_end)
    train = full_train
    if percent < 100:
        train = (0, (train_end - seq_len) * percent // 100 + seq_len)
    return Borders(train=train, val=(max(train_end - seq_len, 0), val_end),
                   test=(max(val_end - seq_len, 0), test_end), scaler_rows=full_train)


def window_count(rows: tuple[int, int], seq_len: int, pred_len: int) -> int:
    return rows[1] - rows[0] - seq_len - pred_len + 1


def check_lengths(borders: Borders, seq_len: int, pred_len: int) -> None:
    for split in SPLITS:
        rows = borders.of(split)
        if window_count(rows, seq_len, pred_len) < 1:
            raise UserError(f"the {split} split has {rows[1] - rows[0]} rows, too short for --seq_len {seq_len} "
                            f"+ --pred_len {pred_len}; shorten them or use a longer file")
