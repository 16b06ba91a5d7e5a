"""Where a run writes: one pair of folders per version of a setting, so a run never touches an earlier run's files.

`<output_dir>/<name>/` (results, plots) and `<checkpoints>/<name>/` (best.safetensors, last/, previous/), where
name is `<setting>_<itr>` for a setting's first run, then `<setting>_<itr>_v2`, `_v3`, ...:
  - a training run claims a new version, after the newest that exists;
  - `--resume auto` continues the newest version holding a resumable state (none: it claims a new version);
  - `--resume DIR` continues the version DIR belongs to;
  - `--is_training 0` scores the newest version holding best.safetensors and writes beside its results.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from timellm_launcher.core.errors import UserError
from timellm_launcher.core.files import version_name
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.model_io import BEST
from timellm_launcher.engine.train.checkpoint import STATE_FILE


@dataclass(frozen=True)
class RunFolders:
    name: str
    results: Path
    checkpoints: Path
    note: str = ""  # a line for the user when the choice is not the obvious one

    def remove_if_empty(self) -> None:
        """After a failed run: its folders go when nothing was written into them (rmdir refuses anything else)."""
        for folder in (self.results, self.checkpoints):
            if folder.is_dir():
                for inner in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                    with contextlib.suppress(OSError):
                        inner.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()


def versions(output_dir: Path, checkpoints: Path, base: str) -> list[tuple[int, str]]:
    """(number, name) of every version of `base` with a folder in either place, oldest first."""
    pattern = re.compile(re.escape(base) + r"(?:_v(\d+))?")
    found = {}
    for parent in (output_dir, checkpoints):
        if parent.is_dir():
            for entry in parent.iterdir():
                match = pattern.fullmatch(entry.name)
                if match and entry.is_dir():
                    found[int(match.group(1) or 1)] = entry.name
    return sorted(found.items())


def choose(output_dir: Path, checkpoints: Path, base: str, *, is_training: bool, resume: str,
           has_state) -> RunFolders:
    """The folders this run uses; a new version's folders are created here (claimed, so parallel runs of one
    setting take different versions). `has_state(checkpoint_folder)` says whether it holds a resumable state."""
    existing = versions(output_dir, checkpoints, base)

    def at(name: str, note: str = "", ckpt: Path | None = None) -> RunFolders:
        return RunFolders(name, output_dir / name, ckpt or checkpoints / name, note)

    if not is_training:
        for _, name in reversed(existing):
            if (checkpoints / name / BEST).is_file():
                return at(name)
        raise UserError(f"--is_training 0: no trained checkpoint of this setting under --checkpoints {checkpoints} "
                        f"(looked for {base}[_vN]/{BEST}); train it first or point --checkpoints at its folder")
    if resume == "auto":
        for _, name in reversed(existing):
            if has_state(checkpoints / name):
                return at(name)
    elif resume:
        folder = Path(resume)
        if not folder.is_dir():
            raise UserError(f"--resume {folder}: no such checkpoint folder")
        if not (folder / STATE_FILE).is_file():
            raise UserError(f"--resume {folder}: no {STATE_FILE} there (name a run's last/ or previous/ "
                            "folder, or use --resume auto)")
        name = folder.resolve().parent.name
        return at(name, ckpt=folder.resolve().parent)
    make_folder("--output_dir", output_dir)
    make_folder("--checkpoints", checkpoints)
    number = existing[-1][0] + 1 if existing else 1
    while True:
        name = version_name(base, number)
        try:
            make_folder("--checkpoints", checkpoints / name, claim=True)
        except FileExistsError:
            number += 1
            continue
        make_folder("--output_dir", output_dir / name)
        note = f"earlier runs of this setting are kept; this run writes version {number} ({name})" if existing else ""
        if resume == "auto":
            note = f"--resume auto: no resumable state of this setting under {checkpoints}; starting from scratch" + \
                   (f" as version {number}" if number > 1 else "")
        return at(name, note)


def make_folder(flag: str, folder: Path, claim: bool = False) -> None:
    """Create `folder` (claim: it must not exist yet) and make sure files can be written in it, before any
    training happens, so a run never computes results it cannot save."""
    for parent in [folder.parent, *folder.parent.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{flag} {parent}: is a file, not a folder; name a folder")
    try:
        folder.mkdir(parents=True, exist_ok=not claim)
    except FileExistsError:
        if claim:
            raise
        raise UserError(f"{flag} {folder}: is a file, not a folder; name a folder") from None
    except OSError as err:
        raise UserError(f"{flag} {folder}: cannot create it ({err.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"{flag} {folder}: cannot write there ({err.strerror}); choose a writable folder") from None


def claim_folders(cfg: Config, accelerator: Accelerator, base: str, has_state) -> RunFolders:
    """The main process picks (and claims) this run's version folders; every process gets its choice."""
    choice: RunFolders | str | None = None
    if accelerator.is_main_process:
        try:
            choice = choose(Path(cfg.output_dir), Path(cfg.checkpoints), base, is_training=bool(cfg.is_training),
                            resume=cfg.resume, has_state=has_state)
            make_folder("--output_dir", choice.results)
            make_folder("--checkpoints", choice.checkpoints)
        except UserError as err:
            choice = str(err)
    if accelerator.num_processes > 1:
        choice = broadcast_object_list([choice])[0]
    if isinstance(choice, str):
        raise UserError(choice)
    return choice
