"""Writing output files so that a crash never leaves a half-written one: write beside, then move into place."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from timellm_launcher.core.errors import write_failure


def file_mode() -> int:
    """The mode a plain open() gives a new file: 0666 less the umask (libraries that write 0600 are corrected)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, so writers that read it pick the right format); when the
    block succeeds the file gets the standard mode and replaces `path` in one rename, else it is removed."""
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        failure = write_failure(path, err)
        if failure is not None:
            raise failure from None
        raise


def json_ready(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(path: Path, value: Any, *, keep_infinity: bool = False) -> Path:
    """Atomically; NaN and infinities become null, unless keep_infinity (state files this project reads back
    itself, where an infinite best score must stay infinite) writes them as Python's json does."""
    text = json.dumps(value) if keep_infinity else json.dumps(json_ready(value), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, content: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return path


def version_name(base: str, number: int) -> str:
    """The name of a run's (or an output file's) number-th version: base, base_v2, base_v3, ..."""
    return base if number == 1 else f"{base}_v{number}"
