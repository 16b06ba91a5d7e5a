"""Checkpoints that hold the trainable parameters only (the frozen LLM is reloaded from its source).

Layout of `<checkpoints>/<run>/`:
  best.safetensors   trainable weights of the best validation epoch (what the test set is scored with)
  last/              everything `--resume` needs: model.safetensors, optimizer.safetensors (tensors, with the
                     parameter groups as JSON metadata), training_state.json (progress, scheduler, config, data
                     fingerprint), rng_rank<i>.json; under DeepSpeed its own sharded checkpoint instead of the
                     first two (frozen parameters excluded)
  previous/          the state saved before last/: resume falls back to it when last/ is damaged
Nothing here is a pickle, so a shared run folder cannot run code when it is read. The one exception is DeepSpeed's
shards (zero/*.pt), which DeepSpeed itself writes and reads with torch's full unpickler: resume only DeepSpeed
states you wrote. Every write goes to a temporary name first and is moved into place, so a crash mid-write leaves
the previous checkpoint intact. """

from __future__ import annotations

import json
import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from timellm_launcher.core.errors import UserError, write_failure
from timellm_launcher.core.files import atomic_path, write_json
from timellm_launcher.engine.config import RUN_ONLY, Config
from timellm_launcher.engine.model_io import (
    DamagedCheckpoint,
    load_weights,
    read_checkpoint_file,
    save_weights,
    weights_run_id,
)
from timellm_launcher.engine.report.run_report import RESULTS_FILE

DEEPSPEED_TAG = "zero"
STATES = ("last", "previous")  # resumable states, newest first


STATE_FILE = "training_state.json"


def _json_file(path: Path) -> Any:
    return read_checkpoint_file(path, lambda p: json.loads(p.read_text(encoding="utf-8")))


def _zip_intact(path: Path) -> None:
    """A DeepSpeed shard is a zip archive (torch's format): check every member's CRC without unpickling anything."""
    with zipfile.ZipFile(path) as archive:
        broken = archive.testzip()
    if broken is not None:
        raise ValueError(f"member {broken} fails its CRC")


def rng_state() -> dict[str, Any]:
    """Every generator's state as JSON values (lists of ints and floats)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(words), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """The optimizer's tensors into safetensors; its parameter groups and non-tensor state as JSON metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(state["param_groups"]),
                                               "scalars": json.dumps(scalars)})


def load_optimizer_file(path: Path) -> dict[str, Any]:
    """The state dict save_optimizer wrote (tuples in the parameter groups come back as tuples)."""
    def read(p: Path) -> dict[str, Any]:
        with safe_open(str(p), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        groups = json.loads(meta["param_groups"])
        entries: dict[int, dict[str, Any]] = {}
        for key, value in [*tensors.items(), *json.loads(meta["scalars"]).items()]:
            index, name = key.split("/", 1)
            entries.setdefault(int(index), {})[name] = value
        for group in groups:
            group.update({k: tuple(v) for k, v in group.items() if k == "betas"})
        return {"state": entries, "param_groups": groups}
    return read_checkpoint_file(path, read)


def _is_deepspeed(model: nn.Module) -> bool:
    return hasattr(model, "save_checkpoint") and hasattr(model, "load_checkpoint")


def save_training_state(accelerator: Accelerator, model: nn.Module, raw_model: nn.Module,
                        optimizer: torch.optim.Optimizer, progress: dict[str, Any], run_dir: Path) -> None:
    """Called on every rank: each writes its share into last.tmp, then the main process moves last/ to previous/
    and last.tmp/ to last/. A crash at any point leaves at least one complete state."""
    folder = run_dir / STATES[0]
    tmp, previous = run_dir / (STATES[0] + ".tmp"), run_dir / STATES[1]
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        if _is_deepspeed(model):
            model.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False, exclude_frozen_parameters=True)
        elif accelerator.is_main_process:
            save_weights(raw_model, tmp / "model.safetensors")
            save_optimizer(optimizer, tmp / "optimizer.safetensors")
        write_json(tmp / f"rng_rank{accelerator.process_index}.json", rng_state(), keep_infinity=True)
        if accelerator.is_main_process:
            write_json(tmp / STATE_FILE, progress, keep_infinity=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)  # last/ and previous/ stay as they were
        failure = write_failure(tmp, err)
        if failure is not None:
            raise failure from None
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(folder, previous)
        os.replace(tmp, folder)
    accelerator.wait_for_everyone()


def find_states(run_dir: Path) -> list[Path]:
    """The resumable states of a run folder, newest first (last/, then previous/)."""
    return [run_dir / name for name in STATES if (run_dir / name / STATE_FILE).is_file()]


def read_progress(folder: Path) -> dict[str, Any]:
    """training_state.json of a state folder: progress, scheduler, config and data fingerprint, to be checked
    against the run before any weight is loaded."""
    if not (folder / STATE_FILE).is_file():
        raise UserError(f"--resume {folder}: no {STATE_FILE} there (expected a checkpoint 'last' folder)")
    saved = _json_file(folder / STATE_FILE)
    if not isinstance(saved, dict) or not all(isinstance(saved.get(k), dict)
                                              for k in ("progress", "scheduler", "config")):
        raise DamagedCheckpoint(f"{folder / STATE_FILE}: not a training state (progress, scheduler and config "
                                "missing)")
    return saved


def load_training_state(accelerator: Accelerator, model: nn.Module, raw_model: nn.Module,
                        optimizer: torch.optim.Optimizer, folder: Path) -> dict[str, Any]:
    """Restores weights and optimizer; returns this rank's RNG state for the caller to apply at the right point.
    A file that cannot be read raises DamagedCheckpoint naming it."""
    rng_file = folder / f"rng_rank{accelerator.process_index}.json"
    rng_file = rng_file if rng_file.is_file() else folder / "rng_rank0.json"
    rng = _json_file(rng_file)
    if not isinstance(rng, dict) or not {"python", "numpy", "torch"} <= set(rng):
        raise DamagedCheckpoint(f"{rng_file}: not a random-generator state")
    if _is_deepspeed(model):
        if not (folder / DEEPSPEED_TAG).is_dir():
            raise UserError(f"--resume {folder}: not a DeepSpeed checkpoint; resume with the precision/DeepSpeed "
                            "settings it was written with")
        for part in sorted((folder / DEEPSPEED_TAG).glob("*.pt")):
            read_checkpoint_file(part, _zip_intact)
        model.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_module_strict=False,
                              load_optimizer_states=True, load_lr_scheduler_states=False)
    else:
        if not (folder / "model.safetensors").is_file():
            raise UserError(f"--resume {folder}: a DeepSpeed checkpoint; resume it with DeepSpeed enabled")
        optimizer_state = load_optimizer_file(folder / "optimizer.safetensors")
        load_weights(raw_model, folder / "model.safetensors")
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError) as err:
            raise DamagedCheckpoint(f"{folder / 'optimizer.safetensors'}: does not fit this model's optimizer "
                                    f"({str(err).splitlines()[0][:200]})") from None
    current = rng_state()
    try:  # applied once here so a malformed state fails now, as one line, not mid-epoch
        set_rng_state(rng)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DamagedCheckpoint(f"{rng_file}: not a random-generator state ({str(err)[:200]})") from None
    finally:
        set_rng_state(current)
    return rng


def check_resumable(folder: Path, saved: dict, cfg: Config, data_fingerprint: str, data_path: Path) -> None:
    """A state must come from these flags and this data; checked before any weight is loaded."""
    changed = [k for k, v in saved["config"].items() if k not in RUN_ONLY and getattr(cfg, k, v) != v]
    if changed:
        raise UserError(f"--resume {folder}: it was written with other values of "
                        f"{', '.join('--' + k for k in changed)}; resume with the flags it was trained with")
    if saved.get("data_fingerprint", data_fingerprint) != data_fingerprint:
        raise UserError(f"--resume {folder}: it was trained on other data than {data_path} holds now; "
                        "resume with the data it was trained on")


def check_checkpoint_owner(best_path: Path, results_folder: Path, is_training: bool) -> str | None:
    """The run id in best.safetensors; under --is_training 0 it must be the one the version's results.json
    records (a checkpoint swapped in from another run is refused)."""
    found = weights_run_id(best_path)
    record = results_folder / RESULTS_FILE
    if not is_training and record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8")).get("run_id")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            recorded = None
        if recorded and recorded != found:
            raise UserError(f"--is_training 0: {best_path} was written by another run (id {found}) than "
                            f"{record} (id {recorded}); put that run's own best.safetensors back")
    return found


def resume_from(states: list[Path], accelerator: Accelerator, setup, *, say, kept: str,
                check) -> tuple[Path, dict[str, Any], dict]:
    """(folder, its saved progress, its RNG state) of the newest intact state, its weights and optimizer loaded into
    `setup`; a damaged state is reported, removed (so the next save rotates the intact one) and the one before it
    tried. `check(folder, saved)` refuses a state of other flags or data before any weight is loaded."""
    for i, folder in enumerate(states):
        try:
            saved = read_progress(folder)
            check(folder, saved)
            rng = load_training_state(accelerator, setup.model, setup.raw_model, setup.optimizer, folder)
            return folder, saved, rng
        except DamagedCheckpoint as err:
            if i + 1 == len(states):
                raise UserError(f"--resume: {err}; no intact state is left to resume from (train again without "
                                f"--resume; {kept} is kept)") from None
            say(f"--resume: {err}; resuming from the state saved before it, {states[i + 1]}")
            if accelerator.is_main_process:
                shutil.rmtree(folder, ignore_errors=True)
    raise UserError("--resume: no state to resume from")
