"""Never lose a result, never report a wrong one: each probe of an adversarial user, as a test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, run_cli, synthetic_frame

SHORT = ["--train_epochs", "1", "--max_train_steps", "6"]
RESUMABLE = ["--train_epochs", "2", "--max_train_steps", "6", "--save_every_steps", "2", "--lradj", "type1",
             "--seed", "3"]


def _custom(folder: Path, name: str = "series.csv") -> list[str]:
    return ["--data", "custom", "--root_path", str(folder), "--data_path", name, "--features", "M", *TINY]


def _write(folder: Path, frame: pd.DataFrame, name: str = "series.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def _main(argv: list[str]) -> int:
    import run_main

    return run_main.main(argv)


def _refused(argv: list[str], capsys, *, written: Path | None = None) -> str:
    """Exit 2 with one error line on stderr, and nothing under `written`."""
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    if written is not None:
        assert not written.exists() or not any(written.rglob("*.json")), list(written.rglob("*"))
    return err


def _outputs(tmp_path: Path) -> list[str]:
    return ["--output_dir", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "checkpoints")]


@pytest.fixture
def frame() -> pd.DataFrame:
    return synthetic_frame(700, ["a", "b", "OT"])


# ------------------------------------------------------------------ silent wrong results
@pytest.mark.parametrize("value", ["1e308", "-1e308", "inf"])
def test_overflowing_values_are_refused_with_the_column(tmp_path, frame, capsys, value):
    frame = frame.astype({"OT": object})
    frame.loc[20, "OT"] = value
    _write(tmp_path, frame)
    err = _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys, written=tmp_path / "results")
    assert "OT" in err and ("overflow" in err or "NaN/inf" in err)


def test_values_beyond_float32_after_scaling_are_refused(tmp_path, frame, capsys):
    frame.loc[len(frame) - 3, "a"] = 1e45  # finite in float64, inf in the model's float32
    _write(tmp_path, frame)
    err = _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys)
    assert "column(s) a" in err and "float32" in err


@pytest.mark.parametrize("how", ["swapped", "descending", "duplicated"])
def test_dates_out_of_order_are_refused_with_the_line(tmp_path, frame, capsys, how):
    if how == "swapped":
        frame.loc[[300, 301], "date"] = frame.loc[[301, 300], "date"].to_numpy()
        line = 303
    elif how == "descending":
        frame = frame.iloc[::-1]
        line = 3
    else:
        frame.loc[400, "date"] = frame.loc[399, "date"]
        line = 402
    _write(tmp_path, frame)
    err = _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys)
    assert f"line {line}" in err and "dates must increase" in err


# ------------------------------------------------------------------ lost or overwritten data
def test_running_twice_keeps_the_first_run_whole(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *SHORT]
    code, first = run_cli(args, tmp_path)
    assert code == 0
    run = tmp_path / "results" / first["setting"]
    ckpt = Path(first["checkpoint_absolute"]).parent
    before = {p: p.read_bytes() for folder in (run, ckpt) for p in folder.rglob("*") if p.is_file()}
    code, second = run_cli(args, tmp_path)
    assert code == 0
    assert second["setting"] == first["setting"] + "_v2"
    assert "this run writes version 2" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before  # every file of the first run, byte for byte
    table = (tmp_path / "results" / "result_long_term_forecast.txt").read_text()
    assert table.count(first["setting"] + "  \n") == 1 and table.count(second["setting"] + "  \n") == 1
    assert Path(second["checkpoint_absolute"]).parent.name == first["setting"] + "_v2"


def test_custom_runs_on_different_files_keep_apart(tmp_path, frame):
    _write(tmp_path, frame, "one.csv")
    _write(tmp_path, synthetic_frame(700, ["a", "b", "OT"], seed=5), "two.csv")
    _, one = run_cli([*_custom(tmp_path, "one.csv"), *SHORT], tmp_path)
    _, two = run_cli([*_custom(tmp_path, "two.csv"), *SHORT], tmp_path)
    assert "_one_48_12_" in one["setting"] and "_two_48_12_" in two["setting"]
    assert json.loads((tmp_path / "results" / one["setting"] / "results.json").read_text()) == one


def test_a_rerun_killed_early_leaves_the_earlier_best_checkpoint(tmp_path, frame, capsys):
    """A new run claims its own version: whatever happens to it, the earlier run's files stay and still match."""
    _write(tmp_path, frame)
    _, first = run_cli([*_custom(tmp_path), *SHORT], tmp_path)
    bad = frame.copy()
    bad.loc[650, "date"] = bad.loc[649, "date"]  # the rerun dies on its data, after the first one finished
    _write(tmp_path, bad)
    _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys)
    assert Path(first["checkpoint_absolute"]).is_file()
    assert json.loads((tmp_path / "results" / first["setting"] / "results.json").read_text())[
        "checkpoint_absolute"] == first["checkpoint_absolute"]


def test_unwritable_output_is_found_before_training(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    err = _refused([*_custom(tmp_path), *SHORT, "--output_dir", "/proc/timellm-results",
                    "--checkpoints", str(tmp_path / "checkpoints")], capsys)
    assert "--output_dir" in err
    assert "epoch" not in capsys.readouterr().out


def test_output_dir_naming_a_file(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    (tmp_path / "afile").write_text("x")
    err = _refused([*_custom(tmp_path), *SHORT, "--output_dir", str(tmp_path / "afile")], capsys)
    assert "is a file, not a folder" in err


def test_outputs_share_one_file_mode(tmp_path, frame):
    _write(tmp_path, frame)
    _, result = run_cli([*_custom(tmp_path), *SHORT, "--save_every_steps", "3"], tmp_path)
    ckpt = Path(result["checkpoint_absolute"])
    files = [ckpt, ckpt.parent / "last" / "model.safetensors", ckpt.parent / "last" / "optimizer.safetensors",
             tmp_path / "results" / result["setting"] / "results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o666 & ~umask}


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
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
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
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
    run_dir = _stopped_run(tmp_path, args, at_step=3)
    shutil.rmtree(run_dir / "previous", ignore_errors=True)
    target = run_dir / "last" / "optimizer.safetensors"
    target.write_bytes(b"not a checkpoint")
    err = _refused([*args, "--resume", "auto", *_outputs(tmp_path)], capsys)
    assert str(target) in err and "no intact state" in err


def test_damaged_best_checkpoint_on_test_only(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *SHORT]
    _, result = run_cli(args, tmp_path)
    best = Path(result["checkpoint_absolute"])
    best.write_bytes(best.read_bytes()[:200])
    err = _refused([*args, "--is_training", "0", *_outputs(tmp_path)], capsys)
    assert str(best) in err and "damaged" in err


@pytest.mark.parametrize("at_step", [1, 4, 7])
def test_stopped_at_any_step_resumes_to_the_uninterrupted_metrics(tmp_path, frame, at_step):
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    _stopped_run(tmp_path, args, at_step)
    code, resumed = run_cli([*args, "--resume", "auto"], tmp_path)
    assert code == 0
    _same_metrics(resumed, whole)


def test_crash_while_writing_a_checkpoint_resumes_to_the_uninterrupted_metrics(tmp_path, frame):
    """The process dies inside a state save, after part of last.tmp/ is written: the state before it is used."""
    import timellm_launcher.engine.train.checkpoint as checkpoint

    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
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

    _write(tmp_path, frame)
    real = trainer_module.evaluate

    def evaluate_then_stop(model, loader, accelerator, desc):
        if desc == "test":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, loader, accelerator, desc)

    trainer_module.evaluate = evaluate_then_stop
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli([*_custom(tmp_path), *SHORT], tmp_path)
    finally:
        trainer_module.evaluate = real
    assert stop.value.code == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert "interrupted by SIGTERM during the test" in captured.out and "--is_training 0" in captured.out
    assert "Traceback" not in captured.err
    code, scored = run_cli([*_custom(tmp_path), *SHORT, "--is_training", "0"], tmp_path)
    assert code == 0


# ------------------------------------------------------------------ resume across moves
def test_resume_after_moving_the_checkpoints_and_the_data(tmp_path, frame):
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
    whole = _uninterrupted(tmp_path, args)
    _stopped_run(tmp_path, args, at_step=3)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(tmp_path / "checkpoints", moved / "checkpoints")
    _write(moved, frame)
    args_moved = [a if a != str(tmp_path) else str(moved) for a in args]
    import run_main

    code = run_main.main([*args_moved, "--resume", "auto", "--output_dir", str(tmp_path / "results"),
                          "--checkpoints", str(moved / "checkpoints")])
    assert code == 0
    resumed = json.loads(next((tmp_path / "results").glob("*/results.json")).read_text())
    _same_metrics(resumed, whole)


def test_resume_on_other_data_is_refused(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
    _stopped_run(tmp_path, args, at_step=3)
    changed = frame.copy()
    changed.loc[10, "a"] += 1.0
    _write(tmp_path, changed)
    err = _refused([*args, "--resume", "auto", *_outputs(tmp_path)], capsys)
    assert "other data" in err


# ------------------------------------------------------------------ messages
def test_semicolon_separated_file_trains(tmp_path, frame):
    frame.to_csv(tmp_path / "series.csv", index=False, sep=";")
    code, result = run_cli([*_custom(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["columns"] == ["a", "b", "OT"]


def test_decimal_commas_get_a_hint(tmp_path, frame, capsys):
    text = frame.round(3).to_csv(index=False, sep=";").replace(".", ",")
    (tmp_path / "series.csv").write_text(text)
    assert "decimal commas" in _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys)


def test_non_utf8_names_the_line(tmp_path, frame, capsys):
    data = frame.to_csv(index=False).encode()
    lines = data.split(b"\n")
    lines[41] = lines[41].replace(b"2016", b"2016\xe9", 1)
    (tmp_path / "series.csv").write_bytes(b"\n".join(lines))
    err = _refused([*_custom(tmp_path), *SHORT, *_outputs(tmp_path)], capsys)
    assert "line 42" in err and "UTF-8" in err


def test_unknown_backbone_with_random_init_does_not_suggest_random_init(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    args = [a if a != "GPT2" else "no-such/model" for a in _custom(tmp_path)]
    err = _refused([*args, *SHORT, *_outputs(tmp_path)], capsys)
    assert "--llm_init random:" in err and "or --llm_init random" not in err


def test_llm_path_with_random_init_uses_its_config(tmp_path, frame):
    from timellm_launcher.models.backbone import minilm_dir

    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *SHORT, "--llm_path", str(minilm_dir()), "--llm_dim", "0"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert result["model"]["llm_dim"] == 384  # MiniLM's width, not GPT-2's 768


# ------------------------------------------------------------------ property-based fuzzing of the data path
def _fuzz_case(draw_frame: pd.DataFrame, folder: Path, raw: bytes | None = None) -> Path:
    path = folder / "fuzz.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        draw_frame.to_csv(path, index=False)
    return path


def test_fuzzed_files_build_or_fail_in_one_line(tmp_path_factory):
    """Generated files with missing cells, odd separators and encodings, huge and tiny values, repeated or shuffled
    dates and few rows: building the data either succeeds with finite scaled values or raises a one-line
    UserError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from timellm_launcher.core.errors import UserError
    from timellm_launcher.data_provider.data_factory import build_data
    from timellm_launcher.engine.config import Config

    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),  # flushed here
                       st.sampled_from([1e308, -1e308, 1e-308, 5e-324, 0.0, 1e45]))

    @st.composite
    def files(draw) -> tuple[str, bytes]:
        rows = draw(st.integers(min_value=0, max_value=160))
        columns = draw(st.integers(min_value=1, max_value=3))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        data = rng.normal(size=(rows, columns))
        for _ in range(draw(st.integers(0, 4))):
            if rows:
                data[draw(st.integers(0, rows - 1)), draw(st.integers(0, columns - 1))] = draw(values)
        dates = pd.date_range("2020-01-01", periods=rows, freq=draw(st.sampled_from(["h", "D", "15min", "MS"])))
        order = draw(st.sampled_from(["sorted", "shuffled", "repeated", "reversed"]))
        dates = list(dates.strftime("%Y-%m-%d %H:%M:%S"))
        if order == "shuffled":
            rng.shuffle(dates)
        elif order == "repeated" and rows > 2:
            dates[rows // 2] = dates[rows // 2 - 1]
        elif order == "reversed":
            dates = dates[::-1]
        frame = pd.DataFrame(data, columns=[*[f"v{i}" for i in range(columns - 1)], "OT"])
        frame.insert(0, "date", dates)
        if draw(st.booleans()) and rows:
            frame.iloc[draw(st.integers(0, rows - 1)), draw(st.integers(1, columns))] = None  # an empty cell
        sep = draw(st.sampled_from([",", ";", "\t", "|"]))
        text = frame.to_csv(index=False, sep=sep)
        encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
        if draw(st.booleans()):
            text = text.replace("v0", "vé0")
        return draw(st.sampled_from(["ffill", "none", "zero"])), text.encode(encoding, errors="replace")

    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(files())
    def check(case: tuple[str, bytes]) -> None:
        fillna, raw = case
        path = _fuzz_case(pd.DataFrame(), folder, raw)
        cfg = Config(data="custom", root_path=str(folder), data_path=path.name, features="M", seq_len=24,
                     pred_len=8, fillna=fillna)
        try:
            data = build_data(cfg.data_options())
        except UserError as err:
            assert "\n" not in str(err) and str(err)
            return
        for dataset in data.datasets.values():
            assert bool(np.isfinite(dataset.values.numpy()).all())

    check()


def test_fuzzed_files_train_or_exit_2_end_to_end(tmp_path_factory, capsys):
    """A few generated files through the whole CLI: exit 0 with finite metrics, or exit 2 with one line."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz_e2e")

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.integers(0, 5), st.sampled_from([None, 1e308, 1e40, np.nan]), st.integers(100, 400))
    def check(corruption: int, value, rows: int) -> None:
        frame = synthetic_frame(rows, ["a", "OT"], seed=corruption)
        if value is not None:
            frame.loc[rows // 2, "OT"] = value
        if corruption == 1:
            frame.loc[rows // 3, "date"] = frame.loc[rows // 3 - 1, "date"]
        run = folder / f"case{len(list(folder.iterdir()))}"
        run.mkdir()
        _write(run, frame)
        code = _main([*_custom(run), "--features", "S", "--train_epochs", "1", "--max_train_steps", "2",
                      "--plot_windows", "0", *_outputs(run)])
        captured = capsys.readouterr()
        assert code in (0, 2) and "Traceback" not in captured.err
        if code == 2:
            assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
            return
        result = json.loads(next((run / "results").glob("*/results.json")).read_text())
        assert all(np.isfinite(result["metrics"]["test"][k]) for k in ("mse", "mae"))

    check()


# ------------------------------------------------------------------ calendars
def test_daylight_saving_offsets_become_one_utc_timeline(tmp_path, frame):
    local = pd.date_range("2021-03-20", periods=len(frame), freq="h", tz="Europe/Berlin")
    frame["date"] = [t.isoformat() for t in local]  # +01:00, then +02:00 after the change
    _write(tmp_path, frame)
    code, result = run_cli([*_custom(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["input"]["freq"] == "h" and result["data"]["input"]["regular"]


def test_day_first_dates_are_read_day_first(tmp_path):
    frame = synthetic_frame(400, ["a", "OT"], freq="MS")
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y")  # 01/02/1950 is 1 February
    _write(tmp_path, frame)
    code, result = run_cli([*_custom(tmp_path), *SHORT], tmp_path)
    assert code == 0 and result["data"]["input"]["freq"] == "MS" and result["data"]["input"]["season_length"] == 12


def test_stray_resume_folder_creates_nothing(tmp_path, frame, capsys):
    _write(tmp_path, frame)
    (tmp_path / "checkpoints" / "somewhere").mkdir(parents=True)
    err = _refused([*_custom(tmp_path), *SHORT, "--resume", str(tmp_path / "checkpoints" / "somewhere"),
                    *_outputs(tmp_path)], capsys)
    assert "no training_state.json" in err and not (tmp_path / "results").exists()


def test_sigterm_during_the_last_validation_stops_before_the_test(tmp_path, frame, capsys):
    import timellm_launcher.engine.train.trainer as trainer_module

    _write(tmp_path, frame)
    args = [*_custom(tmp_path), *RESUMABLE]
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
