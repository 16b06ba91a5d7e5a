"""`--mixed_precision auto` picks bf16 where the CPU computes it natively (AMX, AVX512-BF16, ARM BF16) and fp32
elsewhere, says why in the header and results.json; a run that names its data trains full epochs."""

from __future__ import annotations

import pytest

from conftest import TINY, run_cli
from timellm_launcher.engine.config import build_parser, config_from_args
from timellm_launcher.engine.train import accelerator as acc_module
from timellm_launcher.engine.train.accelerator import native_bf16, precision_choice

SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
ZEN4 = {"avx2", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni"}
ICE_LAKE = {"avx2", "avx512f", "avx512bw", "avx512_vnni"}  # AVX-512 without bf16
GRAVITON3 = {"fp", "asimd", "sve", "bf16", "i8mm", "svebf16"}
GRAVITON2 = {"fp", "asimd", "asimddp", "lrcpc"}


@pytest.mark.parametrize("flags, reason", [(SAPPHIRE_RAPIDS, "amx_bf16"), (ZEN4, "avx512_bf16"),
                                           (GRAVITON3, "bf16"), (ICE_LAKE, None), (GRAVITON2, None), (set(), None)])
def test_native_bf16_by_cpu_flags(flags, reason):
    assert native_bf16(flags) == reason


def _cfg(*flags: str):
    return config_from_args(build_parser("t").parse_args(list(flags)))


@pytest.mark.parametrize("flags, chosen", [(ZEN4, "bf16"), (SAPPHIRE_RAPIDS, "bf16"), (GRAVITON3, "bf16"),
                                           (ICE_LAKE, "no")])
def test_auto_follows_the_cpu(monkeypatch, flags, chosen):
    monkeypatch.setattr(acc_module.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(acc_module, "cpu_flags", lambda: flags)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    precision, reason = precision_choice(_cfg())
    assert precision == chosen
    assert reason == (native_bf16(flags) or "no native bf16 on this device: fp32 is faster")


def test_explicit_precision_and_launcher_win_over_the_cpu(monkeypatch):
    monkeypatch.setattr(acc_module, "cpu_flags", lambda: ZEN4)
    assert precision_choice(_cfg("--mixed_precision", "no")) == ("no", "--mixed_precision no")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert precision_choice(_cfg()) == (None, "accelerate launch --mixed_precision fp16")


def test_cpuinfo_flags_are_read_from_the_flags_or_features_line(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 i8mm\n")
    real_path = acc_module.Path
    monkeypatch.setattr(acc_module, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert acc_module.cpu_flags() == {"fp", "asimd", "bf16", "i8mm"}


def test_only_the_embedded_default_caps_its_epochs():
    assert _cfg().max_train_steps == 250  # python run_main.py: the embedded recipe
    assert _cfg("--llm_layers", "1").max_train_steps == 250  # still the embedded data
    assert _cfg("--data", "ETTh1").max_train_steps == 0  # names its data: full epochs
    assert _cfg("--data", "vic_elec").max_train_steps == 0
    assert _cfg("--data", "ETTh1", "--max_train_steps", "40").max_train_steps == 40


def test_header_says_precision_steps_and_cap(tmp_path, ett_root, capsys):
    flags = [*TINY, "--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", "--train_epochs", "1",
             "--percent", "5", "--plot_windows", "0"]
    code, result = run_cli(flags, tmp_path / "full")
    out = capsys.readouterr().out
    assert code == 0
    steps = result["history"][0]["steps"]
    assert f"training {steps:,} optimizer steps per epoch x 1 epoch(s)" in out
    assert "capped" not in out
    assert "precision no (--mixed_precision no)" in out
    assert result["precision"] == {"chosen": "no", "reason": "--mixed_precision no"}
    code, result = run_cli([*flags, "--max_train_steps", "3"], tmp_path / "capped")
    out = capsys.readouterr().out
    assert code == 0 and result["history"][0]["steps"] == 3
    assert f"training 3 optimizer steps per epoch, capped at 3 of {steps:,} by --max_train_steps" in out
