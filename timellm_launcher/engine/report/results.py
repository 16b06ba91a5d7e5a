"""Result files: one results.json per run and the TSLib-style result_long_term_forecast.txt table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timellm_launcher.core.files import write_json, write_text

RESULTS_TABLE = "result_long_term_forecast.txt"
RESULTS_FILE = "results.json"


def write_results(folder: Path, result: dict[str, Any], name: str = RESULTS_FILE) -> Path:
    """folder/name, written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_json(folder / name, result)


def record_in_table(output_dir: Path, run_name: str, test: dict[str, Any]) -> Path:
    """The run's line in the TSLib table: appended, or replaced when this run version already has one (a resumed
    or re-scored run), so the table holds one line per version."""
    path = output_dir / RESULTS_TABLE
    entry = f"{run_name}  \nmse:{test['mse']}, mae:{test['mae']}\n\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    kept, replaced = [], False
    for block in (b for b in text.split("\n\n") if b.strip()):
        if block.split("\n", 1)[0].rstrip() != run_name:
            kept.append(block)
        elif not replaced:
            kept.append(entry.rstrip("\n"))
            replaced = True
    if not replaced:
        with open(path, "a", encoding="utf-8") as table:
            table.write(entry)
        return path
    return write_text(path, "".join(block + "\n\n" for block in kept))
