"""--log_with: Accelerate's trackers, the full Config as hyperparameters, the running loss every N steps."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import TINY, read_scalars, run_cli, synthetic_frame


def test_every_accelerate_tracker_is_a_choice():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    from timellm_launcher.engine.config import TRACKER_NAMES

    assert set(TRACKER_NAMES) == set(LOGGER_TYPE_TO_CLASS)


def test_tensorboard_gets_the_config_and_the_running_loss(tmp_path):
    synthetic_frame(700, ["a", "OT"]).to_csv(tmp_path / "series.csv", index=False)
    code, result = run_cli(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv", *TINY,
                            "--train_epochs", "2", "--max_train_steps", "6", "--log_with", "tensorboard",
                            "--log_every_steps", "2", "--levels", "80", "95"], tmp_path)
    assert code == 0
    folder = tmp_path / "results" / result["setting"] / "tensorboard"
    hparams = yaml.safe_load(next(folder.rglob("hparams.yml")).read_text())
    assert set(hparams) == set(result["config"])
    assert hparams["learning_rate"] == result["config"]["learning_rate"] and hparams["levels"] == "80 95"
    scalars = read_scalars(folder)
    assert [step for step, _ in scalars["train/loss_running"]] == [2, 4, 6, 8, 10, 12]
    assert [step for step, _ in scalars["train/loss"]] == [6, 12]
    # the running loss at an epoch's last step is that epoch's train loss
    assert scalars["train/loss_running"][2][1] == scalars["train/loss"][0][1]


def test_a_tracker_whose_package_is_missing_is_one_line(tmp_path, capsys):
    import importlib.util

    import run_main

    missing = next(n for n in ("mlflow", "aim", "dvclive", "comet_ml") if importlib.util.find_spec(n) is None)
    synthetic_frame(700, ["a", "OT"]).to_csv(tmp_path / "series.csv", index=False)
    code = run_main.main(["--data", "custom", "--root_path", str(tmp_path), "--data_path", "series.csv", *TINY,
                          "--log_with", missing, "--output_dir", str(tmp_path / "r"), "--checkpoints",
                          str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: --log_with {missing}") and "pip install" in err and "\n" not in err
    assert Path(tmp_path / "r").exists() is False or not any((tmp_path / "r").rglob("*.json"))
