"""The Python front door (TimeLLMForecaster) and the installed package: the same numbers as the command line, and
nothing generic in site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import tomllib

from conftest import ROOT, TINY, run_cli, synthetic_frame

SHORT = {"train_epochs": 1, "max_train_steps": 6, "features": "M"}


def _tiny_kwargs() -> dict[str, str]:
    return {TINY[i].removeprefix("--"): TINY[i + 1] for i in range(0, len(TINY), 2)}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from timellm_launcher import TimeLLMForecaster

    folder = tmp_path_factory.mktemp("api")
    frame = synthetic_frame(700, ["a", "OT"])
    model = TimeLLMForecaster(**_tiny_kwargs(), **SHORT, levels=(80,), output_dir=str(folder / "results"),
                              checkpoints=str(folder / "checkpoints")).fit(frame)
    return model, frame, folder


def test_fit_gives_the_command_lines_numbers(fitted, tmp_path):
    model, frame, _ = fitted
    frame.to_csv(tmp_path / "series.csv", index=False)
    argv = ["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv", *TINY, "--train_epochs",
            "1", "--max_train_steps", "6", "--features", "M", "--levels", "80"]
    code, cli = run_cli(argv, tmp_path)
    assert code == 0
    for key in ("mse", "mae"):
        assert model.result["metrics"]["test"][key] == cli["metrics"]["test"][key]
    assert model.result["metrics"]["test"]["intervals"] == cli["metrics"]["test"]["intervals"]


def test_predict_cross_validate_save_and_load(fitted, tmp_path):
    from timellm_launcher import TimeLLMForecaster

    model, frame, _ = fitted
    future = model.predict(h=5)
    assert list(future.columns[:3]) == ["date", "a", "OT"] and len(future) == 5 and "OT-hi-80" in future
    backtest = model.cross_validation(frame, n_windows=3, step_size=2)
    assert backtest["cutoff"].nunique() == 3 and backtest.attrs["metrics"]["windows"] == 3
    saved = model.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["best.safetensors", "results.json"]
    again = TimeLLMForecaster.load(saved)
    pd.testing.assert_frame_equal(again.predict(frame), model.predict())
    with pytest.raises(Exception, match="not empty"):
        model.save(saved)


def test_flags_are_checked_when_the_model_is_made():
    from timellm_launcher import TimeLLMForecaster
    from timellm_launcher.core.errors import UserError

    with pytest.raises(UserError, match="--patch_len"):
        TimeLLMForecaster(seq_len=8, patch_len=16)
    with pytest.raises(UserError, match="set by fit"):
        TimeLLMForecaster(data="ETTh1")


def test_the_installed_package_works_from_any_folder(tmp_path):
    """pip install of the checkout: one top-level package with its DeepSpeed config, importable and runnable from
    a folder that is not the checkout."""
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "timellm_launcher", source / "timellm_launcher",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=600)
    top = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name not in ("bin",
                                                                                                     "__pycache__")}
    assert top == {"timellm_launcher"}
    assert (target / "timellm_launcher" / "ds_config_zero2.json").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import timellm_launcher, sys; from timellm_launcher import TimeLLMForecaster; "
            "from timellm_launcher.engine.train.accelerator import DEFAULT_DS_CONFIG; "
            "print(timellm_launcher.__file__, DEFAULT_DS_CONFIG.is_file())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere,
                          env={"PYTHONPATH": str(target), "PATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(target) in done.stdout and done.stdout.strip().endswith("True")
    helped = subprocess.run([sys.executable, "-c", "import sys; from timellm_launcher.commands import forecast; "
                             "sys.exit(forecast(['--help']))"], capture_output=True, text=True, cwd=elsewhere,
                            env={"PYTHONPATH": str(target), "PATH": ""}, timeout=300)
    assert "--rolling" in helped.stdout


def test_package_dependencies_are_the_requirements_pins():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    pins = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    assert declared <= pins
    tests = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"])
    assert declared | tests == pins - {""}
