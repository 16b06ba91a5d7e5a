"""Result files: one results.json per run and the TSLib-style result_long_term_forecast.txt table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from engine.config import Config

RESULTS_TABLE = "result_long_term_forecast.txt"


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_results(cfg: Config, run_name: str, result: dict[str, Any]) -> Path:
    folder = Path(cfg.output_dir) / run_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(result), indent=2, allow_nan=False))
    os.replace(tmp, path)
    test = result["metrics"]["test"]
    with open(Path(cfg.output_dir) / RESULTS_TABLE, "a", encoding="utf-8") as table:
        table.write(f"{run_name}  \nmse:{test['mse']}, mae:{test['mae']}\n\n")
    return path
