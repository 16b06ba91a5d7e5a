"""Prediction intervals by split conformal prediction (`--levels 80 95`): no model change, no extra training.

The best checkpoint forecasts the validation windows. Each (window, variable) pair's score at horizon step h is its
absolute residual |y - y_hat| divided by the spread of its own input window (the standard deviation of the seq_len
inputs, plus a floor of a tenth of the median spread so a flat window cannot blow a score up): a locally adaptive
score, so intervals widen where the series is volatile and narrow where it is calm. The half width at level L is the
ceil((n + 1) L / 100)-th smallest of the n scores at step h, times the window's spread. Under exchangeability of
validation and test windows the interval y_hat +- half_width holds the truth with probability at least L%; the test
windows report how often it did (coverage) beside the nominal level (docs/forecasting.md has the measurements, and
why raw residuals are not enough). Scores and widths are in the scaled units the model forecasts in; in data units
they are multiplied by the variable's train-split standard deviation.
"""

from __future__ import annotations

import math

import torch

MAX_CALIBRATION_ROWS = 200_000  # (window, variable) rows kept: plenty for a quantile, bounded memory
FLOOR_SHARE = 0.1  # the spread floor, as a share of the median validation spread


def column_name(variable: str, level: int, side: str) -> str:
    """neuralforecast's naming: `<name>-lo-80`, `<name>-hi-80`."""
    return f"{variable}-{side}-{level}"


def input_spread(x: torch.Tensor, scored: int) -> torch.Tensor:
    """x [B, seq_len, N] -> [B, 1, scored]: the standard deviation of each scored variable's input window."""
    return x[..., -scored:].float().std(dim=1, keepdim=True)


class ResidualSample:
    """Absolute residuals per horizon step and the input spread, one row per (window, variable); every k-th row
    when there are more than MAX_CALIBRATION_ROWS (k fixed from the loader's size, so the sample spreads over the
    whole split)."""

    def __init__(self, expected_rows: int) -> None:
        self.stride = max(1, math.ceil(expected_rows / MAX_CALIBRATION_ROWS))
        self.seen, self.rows, self.spreads = 0, [], []

    def update(self, pred: torch.Tensor, true: torch.Tensor, spread: torch.Tensor) -> None:
        rows = (pred - true).abs().transpose(1, 2).reshape(-1, pred.shape[1])  # [B * C, H]
        first = (-self.seen) % self.stride
        self.rows.append(rows[first::self.stride].float().cpu())
        self.spreads.append(spread.transpose(1, 2).reshape(-1)[first::self.stride].float().cpu())
        self.seen += rows.shape[0]

    def calibrate(self, levels: tuple[int, ...]) -> dict:
        """{"floor": spread floor, "half_widths": {"80": [score quantile per horizon step], ...}} (a quantile is
        infinite where too few residuals support its level)."""
        spreads = torch.cat(self.spreads)
        floor = FLOOR_SHARE * float(spreads.median())
        scores = (torch.cat(self.rows) / (spreads[:, None] + floor)).sort(dim=0).values
        n = scores.shape[0]
        widths = {}
        for level in levels:
            rank = math.ceil((n + 1) * level / 100)
            widths[str(level)] = scores[rank - 1].tolist() if rank <= n else [math.inf] * scores.shape[1]
        return {"floor": floor, "half_widths": widths}


class CoverageCounter:
    """How many test values fall inside each level's interval, and the intervals' mean width, on the scaled data."""

    def __init__(self, calibration: dict, device: torch.device) -> None:
        self.floor = calibration["floor"]
        self.widths = {level: torch.tensor(w, device=device) for level, w in calibration["half_widths"].items()}
        self.sums = torch.zeros(len(self.widths), 2, dtype=torch.float64, device=device)  # [inside, width] per level
        self.values = 0

    def update(self, pred: torch.Tensor, true: torch.Tensor, spread: torch.Tensor) -> None:
        """Counts stay on the device: no host sync per batch."""
        error, scale = (pred - true).abs(), spread + self.floor  # [B, H, C], [B, 1, C]
        for row, width in enumerate(self.widths.values()):
            half = (width[None, :, None] * scale).expand_as(error)
            self.sums[row, 0] += (error <= half).sum()
            self.sums[row, 1] += 2 * half.sum(dtype=torch.float64)
        self.values += error.numel()

    def compute(self) -> dict[str, dict[str, float]]:
        sums = (self.sums / self.values).tolist()
        return {level: {"nominal": int(level) / 100, "coverage": inside, "mean_width": width}
                for level, (inside, width) in zip(self.widths, sums, strict=True)}


def coverage_line(coverage: dict[str, dict[str, float]]) -> str:
    """'intervals (split conformal ...), test coverage: 80%: 79.4% inside (mean width 0.812), ...'."""
    parts = [f"{int(level)}%: {100 * c['coverage']:.1f}% inside (mean width {c['mean_width']:.3f})"
             for level, c in coverage.items()]
    return "intervals (split conformal on validation residuals), test coverage: " + ", ".join(parts)
