"""Stationary wavelet transform (SWT) in torch: the a-trous algorithm with periodic extension.

Level j filters the previous approximation with the wavelet's decomposition filters dilated by
2**(j-1), circularly, without decimation, so every band keeps the window's length. The alignment
is PyWavelets' own: `swt` below equals `pywt.swt(x, wavelet, level, trim_approx=True, norm=norm)`
(and, with `all_coeffs`, every pair of `trim_approx=False`). The circular taps are gathered with a
fixed index table built once per window length: no Python loop over samples or channels, any
leading batch shape, float32 maths whatever the autocast dtype (the filters are tiny; the bands
are cast back to the input's dtype by the caller when it wants to).

With `norm=True` the filters are divided by sqrt(2): the transform is then a tight frame, so the
band energies add up to the window's energy exactly (what the DWT prompt's energy shares use).
"""

from __future__ import annotations

import pywt
import torch
from torch import nn

WAVELETS = ("db4", "db6", "sym4", "coif2", "haar")


def _taps(length: int, filter_len: int, dilation: int, sign: int) -> torch.Tensor:
    """Index table [length, filter_len] of the circular taps: (n + sign*(shift - k*dilation)) mod length."""
    shift = filter_len * dilation // 2  # PyWavelets' alignment (checked against pywt.swt in the tests)
    n = torch.arange(length).unsqueeze(1)
    k = torch.arange(filter_len).unsqueeze(0)
    return (n + sign * (shift - k * dilation)) % length


class SWT(nn.Module):
    """forward(x [..., L]) -> bands [..., bands, L]; inverse(bands) -> x. L is fixed at construction."""

    def __init__(self, wavelet: str, level: int, length: int, *, norm: bool = True, all_coeffs: bool = False) -> None:
        super().__init__()
        if wavelet not in WAVELETS:
            raise ValueError(f"wavelet {wavelet!r} is not one of {', '.join(WAVELETS)}")
        self.level, self.length, self.all_coeffs, self.norm = level, length, all_coeffs, norm
        w = pywt.Wavelet(wavelet)
        scale = 2 ** -0.5 if norm else 1.0
        filters = torch.tensor([w.dec_lo, w.dec_hi], dtype=torch.float64) * scale  # [2, F]
        self.register_buffer("filters", filters.float(), persistent=False)
        taps = [_taps(length, w.dec_len, 2 ** j, +1) for j in range(level)]
        adjoint = [_taps(length, w.dec_len, 2 ** j, -1) for j in range(level)]
        self.register_buffer("taps", torch.stack(taps), persistent=False)  # [level, L, F]
        self.register_buffer("adjoint_taps", torch.stack(adjoint), persistent=False)
        # orthonormal filters: H^T H + G^T G = 2 I (norm=False) or I (norm=True) at every level
        self.inverse_gain = 1.0 if norm else 0.5

    @property
    def bands(self) -> int:
        """cA_n, cD_n..cD_1 (level + 1); with all_coeffs (cA_j, cD_j) for j = n..1 (2 * level)."""
        return 2 * self.level if self.all_coeffs else self.level + 1

    def _split(self, approx: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One a-trous level: circular filtering of approx [..., L] by the dilated low- and high-pass filters."""
        windows = approx[..., self.taps[j]]  # [..., L, F]
        out = windows @ self.filters.float().T  # [..., L, 2] (float32 even when DeepSpeed cast the buffers)
        return out[..., 0], out[..., 1]

    def levels(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(cA_j, cD_j) for j = 1..level], finest first, float32."""
        if x.shape[-1] != self.length:
            raise ValueError(f"SWT built for windows of {self.length}, got {x.shape[-1]}")
        approx, pairs = x.float(), []
        with torch.autocast(x.device.type, enabled=False):
            for j in range(self.level):
                approx, detail = self._split(approx, j)
                pairs.append((approx, detail))
        return pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = self.levels(x)
        if self.all_coeffs:
            return torch.stack([band for pair in reversed(pairs) for band in pair], dim=-2)
        return torch.stack([pairs[-1][0], *(d for _, d in reversed(pairs))], dim=-2)

    def inverse(self, bands: torch.Tensor) -> torch.Tensor:
        """Exact reconstruction of x from forward(x) (uses cA_n and the details; extra approximations unused)."""
        bands = bands.float()
        if self.all_coeffs:
            approx, details = bands[..., 0, :], [bands[..., 2 * i + 1, :] for i in range(self.level)]
        else:
            approx, details = bands[..., 0, :], [bands[..., i + 1, :] for i in range(self.level)]
        for i, detail in enumerate(details):  # coarsest first
            j = self.level - 1 - i
            both = torch.stack([approx, detail], dim=-1)  # [..., L, 2]
            spread = both[..., self.adjoint_taps[j], :]  # [..., L, F, 2]
            approx = (spread * self.filters.float().T).sum(dim=(-1, -2)) * self.inverse_gain
        return approx
