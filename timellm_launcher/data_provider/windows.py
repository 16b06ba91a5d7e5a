"""Sliding windows over scaled series (one wide table, or many series in long format), cut by index, a whole batch
at a time."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class WindowDataset(Dataset):
    """Input/target windows of one split.

    channel_independent: each (variable, window) pair is its own single-variable sample, ordered
    variable-major as in the reference Time-LLM (index = variable * windows + start). Otherwise a
    sample holds all variables; with target_only the target window keeps the last column only (MS).
    """

    def __init__(self, values: np.ndarray, seq_len: int, pred_len: int, *, channel_independent: bool,
                 target_only: bool = False) -> None:
        self.values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        self.seq_len, self.pred_len = seq_len, pred_len
        self.channel_independent, self.target_only = channel_independent, target_only
        self.n_windows = len(values) - seq_len - pred_len + 1
        self.n_vars = values.shape[1]

    def __len__(self) -> int:
        return self.n_windows * (self.n_vars if self.channel_independent else 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Batched fetch (the DataLoader calls this with the whole batch of indices)."""
        return self.cut(self.values, torch.as_tensor(indices, dtype=torch.long))

    def cut(self, values: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of samples `index` from `values` (this split's series, on any device, indices beside it)."""
        if self.channel_independent:
            channel, start = index // self.n_windows, index % self.n_windows
        else:
            channel, start = None, index
        x_rows = start[:, None] + torch.arange(self.seq_len, device=index.device)
        y_rows = start[:, None] + self.seq_len + torch.arange(self.pred_len, device=index.device)
        if channel is not None:
            x = values[x_rows, channel[:, None]].unsqueeze(-1)
            y = values[y_rows, channel[:, None]].unsqueeze(-1)
        else:
            x = values[x_rows]
            y = values[y_rows][..., -1:] if self.target_only else values[y_rows]
        return {"x": x, "y": y}

    def window_ranges(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(series, first window starts, window counts) per variable, for the linear baseline's Gram matrix: every
        variable's windows (the map is shared across variables, whatever --features scores)."""
        values = self.values.numpy()
        return [(values[:, c], np.array([0]), np.array([self.n_windows])) for c in range(self.n_vars)]


def collate_batch(batch: dict[str, torch.Tensor] | list) -> dict[str, torch.Tensor]:
    """`__getitems__` already returns a stacked batch; a list only arrives from plain indexing."""
    if isinstance(batch, dict):
        return batch
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[s0, s0+1, ..., s0+c0-1, s1, ...]: many aranges at once (no Python loop over the ranges)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.repeat(np.asarray(starts, dtype=np.int64) - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return first + np.arange(total, dtype=np.int64)


class PanelWindowDataset(Dataset):
    """Windows of many univariate series concatenated in one array (long format): window i reads values from
    `starts[i]`, and every start was chosen so that no window crosses into the next series. `series[i]` is the
    window's series (its row in the panel's ids, scalers and per-series metrics)."""

    def __init__(self, values: torch.Tensor, starts: np.ndarray, series: np.ndarray, seq_len: int,
                 pred_len: int) -> None:
        self.values = values  # [rows, 1] float32, shared by the splits
        self.starts = torch.from_numpy(np.ascontiguousarray(starts, dtype=np.int64))
        self.series = torch.from_numpy(np.ascontiguousarray(series, dtype=np.int64))
        self.seq_len, self.pred_len = seq_len, pred_len
        self._starts_on: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.cut(self.values, torch.as_tensor(indices, dtype=torch.long))

    def cut(self, values: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of windows `index` from `values` (on any device, indices beside it)."""
        device = index.device
        if device not in self._starts_on:
            self._starts_on[device] = self.starts.to(device)
        start = self._starts_on[device][index]
        rows = start[:, None] + torch.arange(self.seq_len + self.pred_len, device=device)
        window = values[rows]  # [B, seq_len + pred_len, 1]
        return {"x": window[:, :self.seq_len], "y": window[:, self.seq_len:]}

    def window_ranges(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(series, first window starts, window counts) for the linear baseline's Gram matrix: runs of
        consecutive starts, one per series."""
        starts = self.starts.numpy()
        breaks = np.flatnonzero(np.diff(starts) != 1) + 1
        firsts = np.concatenate([[0], breaks])
        counts = np.diff(np.concatenate([firsts, [len(starts)]]))
        return [(self.values[:, 0].numpy(), starts[firsts], counts)]
