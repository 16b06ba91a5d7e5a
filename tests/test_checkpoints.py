"""Checkpoints and every resume: damaged states fall back or are named in one line, a run stopped at any step (or
killed, killed mid-write, or moved) resumes to the uninterrupted metrics, signals stop cleanly, and a resume with
other data or flags is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, custom_args, output_paths, refused, reset_accelerate, run_cli, write_series

SHORT = ["--train_epochs", "1", "--max_train_steps", "6"]
RESUMABLE = ["--train_epochs", "2", "--max_train_steps", "6", "--save_every_steps", "2", "--lradj", "type1",
             "--seed", "3"]


def _ett(ett_root) -> list[str]:
    return ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY]


# ------------------------------------------------------------------ checkpoints: damage and fallback
def _stopped_run(tmp_path: Path, args: list[str], at_step: int) -> Path:
    """Run `args` and stop it with SIGTERM (delivered by the run's own process) once `at_step` steps are done."""
    import timellm_launcher.engine.train.loop as loop_module

    real = loop_module.train_step
    calls = {"n": 0}

    def step_then_stop(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    loop_module.train_step = step_then_stop
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli(args, tmp_path)
        assert stop.value.code == 128 + signal.SIGTERM
    finally:
        loop_module.train_step = real
    return next((tmp_path / "checkpoints").glob("*/last")).parent


def _uninterrupted(tmp_path: Path, args: list[str]) -> dict:
    folder = tmp_path / "whole"
    folder.mkdir()
    code, whole = run_cli(args, folder)
    assert code == 0
    return whole


def _same_metrics(resumed: dict, whole: dict) -> None:
    for split in ("val", "test"):
        assert resumed["metrics"][split]["mse"] == pytest.approx(whole["metrics"][split]["mse"], rel=1e-6)
        assert resumed["metrics"][split]["mae"] == pytest.approx(whole["metrics"][split]["mae"], rel=1e-6)


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.safetensors", "training_state.json",
                                     "rng_rank0.json"])
def test_damaged_last_state_falls_back_to_the_previous_one(tmp_path, frame, capsys, damaged):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    run_dir = _stopped_run(tmp_path, args, at_step=5)
    assert (run_dir / "previous" / "training_state.json").is_file()
    target = run_dir / "last" / damaged
    intact = target.stat().st_size
    target.write_bytes(target.read_bytes()[: max(1, intact // 3)])
    capsys.readouterr()
    _stopped_run(tmp_path, [*args, "--resume", "auto"], at_step=1)  # resumes from previous/, saves once, stops
    out = capsys.readouterr().out
    assert f"{target}: damaged" in out and "resuming from the state saved before it" in out
    for state in ("last", "previous"):  # the damaged state was dropped, not rotated into previous/
        assert (run_dir / state / damaged).stat().st_size > intact // 2
        json.loads((run_dir / state / "training_state.json").read_text())
    code, resumed = run_cli([*args, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_metrics(resumed, whole)


def test_damaged_only_state_is_named_in_one_line(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    run_dir = _stopped_run(tmp_path, args, at_step=3)
    shutil.rmtree(run_dir / "previous", ignore_errors=True)
    target = run_dir / "last" / "optimizer.safetensors"
    target.write_bytes(b"not a checkpoint")
    err = refused([*args, "--resume", "auto", *output_paths(tmp_path)], capsys)
    assert str(target) in err and "no intact state" in err


def test_damaged_best_checkpoint_on_test_only(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *SHORT]
    _, result = run_cli(args, tmp_path)
    best = Path(result["checkpoint_absolute"])
    best.write_bytes(best.read_bytes()[:200])
    err = refused([*args, "--is_training", "0", *output_paths(tmp_path)], capsys)
    assert str(best) in err and "damaged" in err


@pytest.mark.parametrize("at_step", [1, 4, 7])
def test_stopped_at_any_step_resumes_to_the_uninterrupted_metrics(tmp_path, frame, at_step):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    _stopped_run(tmp_path, args, at_step)
    code, resumed = run_cli([*args, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_metrics(resumed, whole)


def test_crash_while_writing_a_checkpoint_resumes_to_the_uninterrupted_metrics(tmp_path, frame):
    """The process dies inside a state save, after part of last.tmp/ is written: the state before it is used."""
    import timellm_launcher.engine.train.checkpoint as checkpoint

    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    real, saves = checkpoint.save_optimizer, {"n": 0}

    class Crash(BaseException):
        pass

    def save_then_crash(optimizer, path):
        real(optimizer, path)
        saves["n"] += 1
        if saves["n"] == 2:
            raise Crash

    checkpoint.save_optimizer = save_then_crash
    try:
        with pytest.raises(Crash):
            run_cli(args, tmp_path)
    finally:
        checkpoint.save_optimizer = real
    run_dir = next((tmp_path / "checkpoints").glob("*/last")).parent
    assert not (run_dir / "last.tmp").exists() and (run_dir / "last" / "training_state.json").is_file()
    code, resumed = run_cli([*args, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_metrics(resumed, whole)


def test_sigterm_during_the_test_says_how_to_continue(tmp_path, frame, capsys):
    import timellm_launcher.engine.train.trainer as trainer_module

    write_series(tmp_path, frame)
    real = trainer_module.evaluate

    def evaluate_then_stop(model, loader, accelerator, desc, **options):
        if desc == "test":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, loader, accelerator, desc, **options)

    trainer_module.evaluate = evaluate_then_stop
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli([*custom_args(tmp_path), *SHORT], tmp_path)
    finally:
        trainer_module.evaluate = real
    assert stop.value.code == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert "interrupted by SIGTERM during the test" in captured.out and "--is_training 0" in captured.out
    assert "Traceback" not in captured.err
    code, scored = run_cli([*custom_args(tmp_path), *SHORT, "--is_training", "0"], tmp_path)
    assert code == 0


# ------------------------------------------------------------------ resume across moves
def test_resume_after_moving_the_checkpoints_and_the_data(tmp_path, frame):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    _stopped_run(tmp_path, args, at_step=3)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(tmp_path / "checkpoints", moved / "checkpoints")
    write_series(moved, frame)
    args_moved = [a if a != str(tmp_path) else str(moved) for a in args]
    import run_main

    code = run_main.main([*args_moved, "--resume", "auto", "--output_dir", str(tmp_path / "results"),
                          "--checkpoints", str(moved / "checkpoints")])
    assert code == 0
    resumed = json.loads(next((tmp_path / "results").glob("*/results.json")).read_text())
    _same_metrics(resumed, whole)


def test_resume_on_other_data_is_refused(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    _stopped_run(tmp_path, args, at_step=3)
    changed = frame.copy()
    changed.loc[10, "a"] += 1.0
    write_series(tmp_path, changed)
    err = refused([*args, "--resume", "auto", *output_paths(tmp_path)], capsys)
    assert "other data" in err


def test_sigterm_during_the_last_validation_stops_before_the_test(tmp_path, frame, capsys):
    import timellm_launcher.engine.train.trainer as trainer_module

    write_series(tmp_path, frame)
    args = [*custom_args(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    real, seen = trainer_module.evaluate, {"validations": 0}

    def validate_then_stop(model, loader, accelerator, desc):
        if desc == "validate":
            seen["validations"] += 1
            if seen["validations"] == 2:  # the last epoch's validation
                os.kill(os.getpid(), signal.SIGTERM)
        return real(model, loader, accelerator, desc)

    trainer_module.evaluate = validate_then_stop
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli(args, tmp_path)
    finally:
        trainer_module.evaluate = real
    assert stop.value.code == 128 + signal.SIGTERM
    assert "at the end of epoch 2" in capsys.readouterr().out
    assert not list((tmp_path / "results").glob("*/results.json"))  # the test did not run
    code, resumed = run_cli([*args, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_metrics(resumed, whole)


# ------------------------------------------------------------------ killed or stopped in a subprocess
def test_killed_device_data_run_with_mid_epoch_validation_resumes_to_the_same_metrics(ett_root, tmp_path):
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "2",
            "--max_train_steps", "12", "--lradj", "type1", "--seed", "4", "--device_data", "--val_every_steps", "5",
            "--save_every_steps", "4"]
    whole_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    code, whole = run_cli(args, whole_dir)
    assert code == 0
    cut_dir.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_main.py"), *args, "--output_dir",
                             str(cut_dir / "results"), "--checkpoints", str(cut_dir / "checkpoints")],
                            cwd=cut_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list((cut_dir / "checkpoints").glob("*/last/training_state.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=600)
    code, resumed = run_cli([*args, "--resume", "auto"], cut_dir)
    assert code == 0
    assert resumed["metrics"]["test"]["mse"] == pytest.approx(whole["metrics"]["test"]["mse"], rel=1e-6)
    assert [v["val_mse"] for v in resumed["validations"]] == pytest.approx([v["val_mse"] for v in
                                                                           whole["validations"]], rel=1e-6)


RESUME_ARGS = ["--train_epochs", "3", "--max_train_steps", "15", "--save_every_steps", "4", "--lradj", "type1",
               "--seed", "11", "--patience", "5"]


@pytest.fixture(scope="module")
def uninterrupted(ett_root, tmp_path_factory):
    reset_accelerate()
    code, result = run_cli([*_ett(ett_root), *RESUME_ARGS], tmp_path_factory.mktemp("whole"))
    assert code == 0
    return result


def _start_and_stop(ett_root, tmp_path: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a run in a subprocess, deliver `sig` once its first checkpoint exists."""
    args = [sys.executable, str(ROOT / "run_main.py"), *_ett(ett_root), *RESUME_ARGS,
            "--output_dir", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "checkpoints")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list((tmp_path / "checkpoints").glob("*/last/training_state.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _same_run(resumed: dict, whole: dict) -> None:
    for split in ("val", "test"):
        for key, value in whole["metrics"][split].items():
            if key == "baselines":  # computed from the data alone: equal to the bit
                assert resumed["metrics"][split][key] == value
                continue
            assert resumed["metrics"][split][key] == pytest.approx(value, rel=1e-6, abs=1e-6), (split, key)
    for mine, theirs in zip(resumed["history"], whole["history"], strict=True):
        for key in ("lr", "train_loss", "val_mse", "val_mae", "steps"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-6), key


def test_killed_run_resumes_to_the_same_metrics(ett_root, tmp_path, uninterrupted):
    done = _start_and_stop(ett_root, tmp_path, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    state = json.loads(next((tmp_path / "checkpoints").glob("*/last/training_state.json")).read_text())
    assert not state["progress"]["finished"]
    code, resumed = run_cli([*_ett(ett_root), *RESUME_ARGS, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_run(resumed, uninterrupted)


def test_sigterm_saves_and_exits_cleanly_then_resumes(ett_root, tmp_path, uninterrupted):
    done = _start_and_stop(ett_root, tmp_path, signal.SIGTERM)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "interrupted by SIGTERM" in done.stdout and "--resume auto" in done.stdout
    assert "Traceback" not in done.stderr
    code, resumed = run_cli([*_ett(ett_root), *RESUME_ARGS, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_run(resumed, uninterrupted)


# ------------------------------------------------------------------ resume refused
def test_stray_resume_folder_creates_nothing(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    (tmp_path / "checkpoints" / "somewhere").mkdir(parents=True)
    err = refused([*custom_args(tmp_path), *SHORT, "--resume", str(tmp_path / "checkpoints" / "somewhere"),
                   *output_paths(tmp_path)], capsys)
    assert "no training_state.json" in err and not (tmp_path / "results").exists()


def test_resume_from_a_missing_folder(ett_root, tmp_path, capsys):
    err = refused([*_ett(ett_root), "--resume", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "r"),
                   "--checkpoints", str(tmp_path / "c")], capsys)
    assert "--resume" in err


def test_resume_refuses_other_model_flags(ett_run, capsys):
    import run_main

    args = [*ett_run["args"], "--resume", "auto", "--output_dir", str(ett_run["tmp"] / "other"),
            "--checkpoints", str(ett_run["tmp"] / "checkpoints")]
    args[args.index("--lradj") + 1] = "type1"  # the setting name is unchanged, the schedule is not
    assert run_main.main(args) == 2
    assert "--lradj" in capsys.readouterr().err


def test_resume_with_another_seq_len_names_the_flag(tmp_path, frame, capsys):
    write_series(tmp_path, frame)
    code, _ = run_cli([*custom_args(tmp_path), *RESUMABLE], tmp_path)
    assert code == 0
    last = next((tmp_path / "checkpoints").glob("*/last"))
    capsys.readouterr()
    argv = [*custom_args(tmp_path), *RESUMABLE, "--seq_len", "24", "--resume", str(last), *output_paths(tmp_path)]
    assert "--seq_len" in refused(argv, capsys)
