"""Time-LLM's trainable parts: instance normalisation, patch embedding, reprogramming, head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RevIN(nn.Module):
    """Per-sample, per-variable standardisation over time, undone on the forecast (no affine part)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        return (x - mean) / std, mean, std

    @staticmethod
    def denormalize(y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return y * std + mean


class PatchEmbedding(nn.Module):
    """Replicate-pad by `stride`, cut patches, embed them with a circular conv across patches.

    With `channels` > 1 (the SWT bands) each patch carries channels x patch_len values, band by band.
    """

    def __init__(self, d_model: int, patch_len: int, stride: int, dropout: float, channels: int = 1) -> None:
        super().__init__()
        self.patch_len, self.stride, self.channels = patch_len, stride, channels
        self.conv = nn.Conv1d(channels * patch_len, d_model, kernel_size=3, padding=1, padding_mode="circular",
                              bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def count(seq_len: int, patch_len: int, stride: int) -> int:
        return (seq_len - patch_len) // stride + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L] or [B, channels, L] -> [B, patches, d_model]."""
        x = F.pad(x.reshape(x.shape[0], self.channels, x.shape[-1]), (0, self.stride), mode="replicate")
        patches = x.unfold(-1, self.patch_len, self.stride)  # [B, channels, P, patch_len]
        patches = patches.transpose(2, 3).reshape(x.shape[0], self.channels * self.patch_len, -1)
        return self.dropout(self.conv(patches).transpose(1, 2))


class Reprogramming(nn.Module):
    """Cross-attention from patch embeddings onto text prototypes, in the LLM's width (SDPA)."""

    def __init__(self, d_model: int, n_heads: int, d_keys: int, d_llm: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_keys, self.dropout = n_heads, d_keys, dropout
        self.query = nn.Linear(d_model, d_keys * n_heads)
        self.key = nn.Linear(d_llm, d_keys * n_heads)
        self.value = nn.Linear(d_llm, d_keys * n_heads)
        self.out = nn.Linear(d_keys * n_heads, d_llm)

    def forward(self, patches: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """patches [B, P, d_model], prototypes [S, d_llm] -> [B, P, d_llm]."""
        b, p, _ = patches.shape
        s = prototypes.shape[0]
        # every patch attends to the same prototypes: the batch folds into the query axis, so keys and values
        # are never copied per sample (one [heads, B*P, S] attention, the same math as B of [heads, P, S])
        q = self.query(patches).view(1, b * p, self.n_heads, self.d_keys).transpose(1, 2)
        k = self.key(prototypes).view(1, s, self.n_heads, self.d_keys).transpose(1, 2)
        v = self.value(prototypes).view(1, s, self.n_heads, self.d_keys).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(attended.transpose(1, 2).reshape(b, p, self.n_heads * self.d_keys))


class FlattenHead(nn.Module):
    """Flatten the LLM features of the patch positions and map them linearly to the horizon."""

    def __init__(self, in_features: int, pred_len: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, pred_len)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [..., d_ff, patches] -> [..., pred_len]."""
        return self.dropout(self.linear(features.flatten(-2)))
