"""Named benchmark configurations, as run_main.py flags, and the data they read."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]

# GPT-2 shape (768 wide, 50257-token vocabulary) with random weights: the step costs what GPT-2's does
_ETTH1_GPT2_6L = ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--pred_len", "96",
                  "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "6", "--d_model", "32",
                  "--d_ff", "128", "--n_heads", "8", "--num_tokens", "1000", "--patch_len", "16", "--stride", "8",
                  "--mixed_precision", "bf16", "--learning_rate", "0.01", "--lradj", "constant",
                  "--max_train_steps", "0"]
_TINY = ["--data", "ETTh1", "--features", "M", "--seq_len", "48", "--pred_len", "12",
         "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "1", "--llm_dim", "64",
         "--d_model", "8", "--d_ff", "16", "--n_heads", "2", "--num_tokens", "100", "--patch_len", "8",
         "--stride", "8", "--learning_rate", "0.005", "--lradj", "constant", "--max_train_steps", "0",
         "--mixed_precision", "no"]

CONFIGS: dict[str, list[str]] = {"etth1-gpt2-6l": _ETTH1_GPT2_6L, "tiny": _TINY}
BATCH = {"etth1-gpt2-6l": {"cpu": 8, "cuda": 32}, "tiny": {"cpu": 16, "cuda": 64}}


def ett_root() -> Path:
    """../shared/data when it holds ETTh1.csv, else a generated file of ETTh1's shape (hourly, 7 columns)."""
    if (SHARED_DATA / "ETTh1.csv").is_file():
        return SHARED_DATA
    folder = Path(tempfile.mkdtemp(prefix="bench_ett_"))
    rows, rng = 17420, np.random.default_rng(0)
    t = np.arange(rows)
    frame = {"date": pd.date_range("2016-07-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")}
    for i, name in enumerate(ETT_COLUMNS):
        frame[name] = np.sin(2 * np.pi * t / 24 + i) * (2 + i) + np.sin(2 * np.pi * t / 168) + rng.normal(0, .3, rows)
    pd.DataFrame(frame).to_csv(folder / "ETTh1.csv", index=False)
    return folder


def flags_for(name: str, device_type: str) -> list[str]:
    """The run_main.py flags of a named configuration on a device type ("cpu" or "cuda")."""
    batch = BATCH[name]["cuda" if device_type == "cuda" else "cpu"]
    return [*CONFIGS[name], "--root_path", str(ett_root()), "--batch_size", str(batch)]
