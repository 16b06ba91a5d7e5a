"""Time-LLM launcher: train, estimate and forecast LLM-reprogrammed time-series forecasters.

The layers, bottom up: core (errors, files), data_provider (files -> windows), models (Time-LLM), engine (training,
evaluation, reports, estimation, forecasting); commands.py holds the three command-line entry points and api.py the
Python one, TimeLLMForecaster (imported on first use, so the commands parse their flags before torch loads).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TimeLLMForecaster"]


def __getattr__(name: str) -> Any:
    if name == "TimeLLMForecaster":
        from timellm_launcher.api import TimeLLMForecaster

        return TimeLLMForecaster
    raise AttributeError(f"module 'timellm_launcher' has no attribute {name!r}")
