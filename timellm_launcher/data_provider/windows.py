"""Sliding windows over a scaled series, cut by index, a whole batch at a time."""

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


def collate_batch(batch: dict[str, torch.Tensor] | list) -> dict[str, torch.Tensor]:
    """`__getitems__` already returns a stacked batch; a list only arrives from plain indexing."""
    if isinstance(batch, dict):
        return batch
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
