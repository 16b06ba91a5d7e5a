"""Named benchmark configurations, as run_main.py flags, and the data they read."""

from __future__ import annotations

import tempfile
from pathlib import Path

from timellm_launcher.data_provider.synthetic import LAYOUTS, synthetic_frame
from timellm_launcher.engine.recipes import TINY_FLAGS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# GPT-2 shape (768 wide, 50257-token vocabulary) with random weights: the step costs what GPT-2's does
_ETTH1_GPT2_6L = ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--pred_len", "96",
                  "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "6", "--d_model", "32",
                  "--d_ff", "128", "--n_heads", "8", "--num_tokens", "1000", "--patch_len", "16", "--stride", "8",
                  "--mixed_precision", "bf16", "--learning_rate", "0.01", "--lradj", "constant",
                  "--max_train_steps", "0"]
_TINY = ["--data", "ETTh1", "--features", "M", *TINY_FLAGS, "--lradj", "constant", "--max_train_steps", "0"]

CONFIGS: dict[str, list[str]] = {"etth1-gpt2-6l": _ETTH1_GPT2_6L, "tiny": _TINY}
BATCH = {"etth1-gpt2-6l": {"cpu": 8, "cuda": 32}, "tiny": {"cpu": 16, "cuda": 64}}


def ett_root(folder: Path | None = None) -> Path:
    """../shared/data when it holds ETTh1.csv, else `folder` (a new temporary one by default) given a generated
    ETTh1.csv of the real file's shape; the tests' ETTh1 comes from here too."""
    if (SHARED_DATA / "ETTh1.csv").is_file():
        return SHARED_DATA
    folder = folder or Path(tempfile.mkdtemp(prefix="bench_ett_"))
    file, columns, rows, _ = LAYOUTS["ETTh1"]
    synthetic_frame(rows, columns).to_csv(folder / file, index=False)
    return folder


def flags_for(name: str, device_type: str) -> list[str]:
    """The run_main.py flags of a named configuration on a device type ("cpu" or "cuda")."""
    batch = BATCH[name]["cuda" if device_type == "cuda" else "cpu"]
    return [*CONFIGS[name], "--root_path", str(ett_root()), "--batch_size", str(batch)]
