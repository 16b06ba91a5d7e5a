"""Wavelet statistics of each window, as extra slots of the table-built statistics prompt.

The statistics come from the undecimated wavelet transform of the RevIN-normalised window
(models/wavelets.py, norm=True, so band energies add up to the window's energy exactly; undecimated
so a statistic does not change when the window shifts by one step), all tensor ops on the device:

- energy shares of the bands approximation, detail n .. detail 1 (percent, rounded);
- the dominant band (largest share);
- the trend across scales: the least-squares slope sign of every level's approximation; "consistent
  upward/downward" when all agree, else "mixed";
- a signal-to-noise estimate: noise sigma from the finest details by the median absolute deviation
  (Donoho's sigma = median|cD_1| / 0.6745, times sqrt(2) for the norm=True filters), signal power the
  window's variance; SNR = 10 log10((power - sigma^2) / sigma^2) dB, clamped to [-20, 40], read as
  low (< 3 dB), moderate (< 10 dB) or high.

`--prompt_compression` picks the phrases: minimal (dominant band, SNR level), balanced (+ energy
shares, trend consistency), detailed (+ each scale's trend direction, the SNR in dB).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from timellm_launcher.models.wavelets import SWT

COMPRESSIONS = ("minimal", "balanced", "detailed")
SNR_LEVELS = (" low", " moderate", " high")
CONSISTENCY = (" consistent upward", " consistent downward", " mixed")
SNR_RANGE = (-20, 40)


class WaveletPromptStatistics(nn.Module):
    """Prompt extension: `pieces()` (fixed texts and slot tables) and `slot_values(x)` (the table choices)."""

    def __init__(self, wavelet: str, level: int, seq_len: int, compression: str) -> None:
        super().__init__()
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
        self.level, self.compression = level, compression
        self.swt = SWT(wavelet, level, seq_len, norm=True)
        t = torch.arange(seq_len, dtype=torch.float32) - (seq_len - 1) / 2
        self.register_buffer("centred_time", t / (t * t).sum(), persistent=False)

    def band_names(self) -> list[str]:
        return ["approximation", *(f"detail {j}" for j in range(self.level, 0, -1))]

    # ------------------------------------------------------------------ statistics
    def statistics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, L] normalised windows -> shares [B, level+1] (approximation first), dominant [B],
        slopes [B, level] (coarsest first), consistency [B] (index into CONSISTENCY), snr_db [B]."""
        x = x.float()
        pairs = self.swt.levels(x)  # finest first
        bands = torch.stack([pairs[-1][0], *(d for _, d in reversed(pairs))], dim=1)  # [B, level+1, L]
        energy = bands.square().sum(dim=-1)
        shares = energy / energy.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        approximations = torch.stack([a for a, _ in reversed(pairs)], dim=1)  # [B, level, L], coarsest first
        slopes = approximations @ self.centred_time.float()
        up, down = (slopes > 0).all(dim=1), (slopes < 0).all(dim=1)
        consistency = torch.where(up, 0, torch.where(down, 1, 2))
        sigma = pairs[0][1].abs().median(dim=-1).values / 0.6745 * math.sqrt(2.0)
        noise = sigma.square().clamp_min(1e-12)
        power = x.var(dim=-1, unbiased=False)
        snr_db = 10 * torch.log10((power - noise).clamp_min(1e-2 * power.clamp_min(1e-12)) / noise)
        return {"shares": shares, "dominant": shares.argmax(dim=-1), "slopes": slopes, "consistency": consistency,
                "snr_db": snr_db.clamp(*SNR_RANGE)}

    # ------------------------------------------------------------------ prompt pieces
    def pieces(self) -> list[tuple[str, list[str]]]:
        """Fixed texts ("fixed") and slots ("table#column" kinds share one token table per table name)."""
        names = self.band_names()
        pct = [f" {p}" for p in range(101)]
        out: list[tuple[str, list[str]]] = [("fixed", [" Wavelet statistics:"])]
        if self.compression != "minimal":
            out.append(("fixed", [f" energy shares {names[0]}"]))
            for i, name in enumerate(names):
                if i:
                    out.append(("fixed", [f"%, {name}"]))
                out.append((f"dwt_pct#{i}", pct))
            out.append(("fixed", ["%; dominant band"]))
        else:
            out.append(("fixed", [" dominant band"]))
        out.append(("dwt_band", [f" {name}" for name in names]))
        if self.compression != "minimal":
            out.append(("fixed", ["; trend across scales"]))
            out.append(("dwt_consistency", list(CONSISTENCY)))
            if self.compression == "detailed":
                out.append(("fixed", [" (coarse to fine:"]))
                for j in range(self.level):
                    if j:
                        out.append(("fixed", [","]))
                    out.append((f"dwt_direction#{j}", [" down", " up"]))
                out.append(("fixed", [")"]))
        out.append(("fixed", ["; signal-to-noise" if self.compression != "minimal" else ", signal-to-noise"]))
        if self.compression == "detailed":
            out.append(("dwt_snr_db", [f" {v}" for v in range(SNR_RANGE[0], SNR_RANGE[1] + 1)]))
            out.append(("fixed", [" dB,"]))
        out.append(("dwt_snr_level", list(SNR_LEVELS)))
        out.append(("fixed", ["."]))
        return out

    def slot_values(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Table choice per slot kind, [B] long each, for normalised windows x [B, L]."""
        s = self.statistics(x)
        snr = torch.round(s["snr_db"]).long()
        level = (snr >= 3).long() + (snr >= 10).long()
        values = {"dwt_band": s["dominant"], "dwt_snr_level": level, "dwt_snr_db": snr - SNR_RANGE[0],
                  "dwt_consistency": s["consistency"]}
        shares = torch.round(s["shares"] * 100).long()
        for i in range(self.level + 1):
            values[f"dwt_pct#{i}"] = shares[:, i]
        for j in range(self.level):
            values[f"dwt_direction#{j}"] = (s["slopes"][:, j] > 0).long()
        return values
