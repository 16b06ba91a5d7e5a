"""estimate_training_time.py: projection arithmetic, the JSON it writes, --compare, warm-up handling, no files
left behind, and the same flag errors as run_main.py."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

from conftest import TINY, reset_accelerate
from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.estimate.compare import base_arguments, classify, parse_compare
from timellm_launcher.engine.estimate.projection import (
    Cadence,
    Costs,
    batches_per_process,
    earliest_stop_epoch,
    periodic_tests_in_epoch,
    project,
    project_run,
    validations_in_epoch,
)


# ------------------------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("processes", [1, 2, 3, 8])
@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_per_process_matches_accelerate_sharding(processes, drop_last):
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    for samples in (0, 1, 7, 100, 1001, 8581):
        for batch in (1, 16, 33, 128):
            sampler = BatchSampler(SequentialSampler(range(samples)), batch, drop_last=drop_last)
            shard = BatchSamplerShard(sampler, num_processes=processes, process_index=0, split_batches=False,
                                      even_batches=True)
            assert batches_per_process(samples, batch, processes, drop_last) == len(shard), (samples, batch)


@pytest.mark.parametrize("extra", [
    [],
    ["--batch_size", "32", "--grad_accum", "3"],
    ["--percent", "10", "--grad_accum", "2"],
    ["--batch_size", "8", "--max_train_steps", "7"],
])
def test_builders_count_whole_batches_per_epoch(ett_root, extra):
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training

    reset_accelerate()
    args = build_parser("t").parse_args(["--data", "ETTh1", "--root_path", str(ett_root), *TINY,
                                         "--max_train_steps", "0", *extra])
    cfg = config_from_args(args)
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    samples = len(setup.data.datasets["train"])
    steps = batches_per_process(samples, cfg.batch_size, accelerator.num_processes, drop_last=True) // cfg.grad_accum
    assert setup.steps_per_epoch == min(steps, cfg.max_train_steps or steps)  # the ragged last batch dropped
    for split in ("val", "test"):
        assert batches_per_process(len(setup.data.datasets[split]), cfg.eval_batch_size, 1, drop_last=False) \
            == len(setup.loaders[split])


def test_validation_and_test_cadence():
    every = Cadence(train_epochs=5)
    assert [validations_in_epoch(e, every, 100) for e in range(1, 6)] == [1, 1, 1, 1, 1]
    sparse = Cadence(train_epochs=7, val_every=3)
    assert [validations_in_epoch(e, sparse, 100) for e in range(1, 8)] == [0, 0, 1, 0, 0, 1, 1]  # last always
    in_epoch = Cadence(train_epochs=2, val_every_steps=25)
    assert validations_in_epoch(1, in_epoch, 100) == 3 + 1  # after steps 25, 50, 75, then the epoch end
    assert validations_in_epoch(1, in_epoch, 101) == 4 + 1
    # global steps: with 40 steps per epoch, every 30 falls at 30 (epoch 1), 60 (epoch 2), 90 and 120 (epoch 3,
    # where 120 is the epoch's last step and left to the epoch end)
    by_global = Cadence(train_epochs=3, val_every_steps=30)
    assert [validations_in_epoch(e, by_global, 40) for e in (1, 2, 3)] == [1 + 1, 1 + 1, 1 + 1]
    assert validations_in_epoch(1, Cadence(train_epochs=3, val_every=2, val_every_steps=10), 30) == 2
    assert [periodic_tests_in_epoch(e, Cadence(train_epochs=6)) for e in range(1, 7)] == [0] * 6
    periodic = Cadence(train_epochs=6, test_every=2)
    assert [periodic_tests_in_epoch(e, periodic) for e in range(1, 7)] == [0, 1, 0, 1, 0, 1]


def test_earliest_early_stop():
    assert earliest_stop_epoch(Cadence(train_epochs=10, patience=3), 100) == 4  # 1 best + 3 without improvement
    assert earliest_stop_epoch(Cadence(train_epochs=10, val_every=2, patience=2), 100) == 6
    assert earliest_stop_epoch(Cadence(train_epochs=3, patience=5), 100) == 3  # never before the end
    assert earliest_stop_epoch(Cadence(train_epochs=7, val_every=3, patience=2), 100) == 7  # validations 3, 6, 7
    # in-epoch validations count too: 3 inside epoch 1 + its end = 4 > patience 3
    assert earliest_stop_epoch(Cadence(train_epochs=10, val_every_steps=25, patience=3), 100) == 1


def test_run_projection_adds_up():
    costs = Costs(step_s=0.5, first_epoch_extra_s=4.0, val_pass_s=10.0, test_pass_s=20.0, state_save_s=1.0,
                  weights_save_s=0.5, setup_s=3.0)
    cadence = Cadence(train_epochs=4, val_every=2, test_every=3, patience=1)
    run = project_run(costs, cadence, steps_per_epoch=100)
    per_epoch = [e.total_s for e in run.epochs]
    # train 50 (+4 in epoch 1); validation at 2 and 4 (10 s + 0.5 s weights); test at 3; state save every epoch
    assert per_epoch == [54 + 1, 50 + 10 + 1 + 0.5, 50 + 20 + 1, 50 + 10 + 1 + 0.5]
    assert run.total_s == 3.0 + sum(per_epoch) + 20.0
    full = project(costs, cadence, 100, itr=3)
    assert full.train_epoch_s == 50.0 and full.first_train_epoch_s == 54.0
    assert full.epoch_s == pytest.approx(sum(per_epoch) / 4)
    assert full.epochs_per_hour == pytest.approx(3600 / full.epoch_s)
    assert full.to_dict()["total_s"] == pytest.approx(3 * run.total_s)
    # patience 1 with validations at epochs 2 and 4: the earliest stop is after epoch 4; one best-weights save
    early = full.early_stop
    assert len(early.epochs) == 4
    assert sum(e.checkpoint_s for e in early.epochs) == 4 * 1.0 + 0.5


# ------------------------------------------------------------------------------------------- --compare parsing
def test_parse_compare_inline_and_file(tmp_path):
    variants = parse_compare("base=; amp=--use_amp ; big=--batch_size 64 --model_comment 'two words'")
    assert [(v.name, v.flags) for v in variants] == [
        ("base", []), ("amp", ["--use_amp"]), ("big", ["--batch_size", "64", "--model_comment", "two words"])]
    spec = tmp_path / "configs.txt"
    spec.write_text("# name=flags\nbase=\n\nckpt=--gradient_checkpointing  # saves memory\n")
    assert [(v.name, v.flags) for v in parse_compare(f"@{spec}")] == [("base", []),
                                                                     ("ckpt", ["--gradient_checkpointing"])]
    for bad in ("justflags --use_amp", "a=; a=--use_amp", "x=--output y.json", ";", f"@{tmp_path}/none.txt"):
        with pytest.raises(UserError, match="--compare"):
            parse_compare(bad)


def test_base_arguments_drop_the_parents_own_flags():
    argv = ["--data", "ETTh1", "--compare", "a=; b=--use_amp", "--output=x.json", "--batch_size", "8"]
    assert base_arguments(argv) == ["--data", "ETTh1", "--batch_size", "8"]


def test_failed_children_are_classified():
    assert classify(0, {"status": "ok"}, "") == ("ok", "")
    assert classify(2, {"status": "does_not_fit", "error": "CUDA out of memory"}, "")[0] == "does not fit"
    assert classify(-9, None, "")[0] == "does not fit"
    assert classify(2, None, "warning\nerror: --batch_size must be a positive integer, got 0\n") == (
        "failed", "error: --batch_size must be a positive integer, got 0")


def test_out_of_memory_is_recognised():
    import torch

    from timellm_launcher.engine.estimate.estimator import is_out_of_memory

    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# ------------------------------------------------------------------------------------------- real estimates
@pytest.fixture(scope="module")
def estimate(ett_root, tmp_path_factory):
    """One in-process estimate of a tiny ETTh1 run, its JSON and the folders a run would have written."""
    import estimate_training_time

    reset_accelerate()
    tmp = tmp_path_factory.mktemp("estimate")
    before = set(Path(tempfile.gettempdir()).glob("estimate-checkpoint-*"))
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "3",
            "--max_train_steps", "12", "--itr", "2", "--warmup_batches", "2", "--measure_batches", "3",
            "--measure_seconds", "0",
            "--eval_batches", "2", "--checkpoints", str(tmp / "checkpoints"), "--output_dir", str(tmp / "results"),
            "--output", str(tmp / "out" / "estimate.json")]
    code = estimate_training_time.main(args)
    after = set(Path(tempfile.gettempdir()).glob("estimate-checkpoint-*"))
    report = json.loads((tmp / "out" / "estimate.json").read_text())
    return {"code": code, "report": report, "tmp": tmp, "leftover_temp": after - before, "args": args}


def test_estimate_json_schema(estimate):
    assert estimate["code"] == 0
    r = estimate["report"]
    assert r["schema"] == "time-llm-estimate/1" and r["status"] == "ok"
    assert set(r) >= {"device", "config", "estimator", "model", "data", "measured", "projection"}
    assert r["device"]["type"] == "cpu" and r["device"]["num_processes"] == 1 and r["device"]["name"]
    assert r["config"]["batch_size"] == 16 and r["config"]["llm_layers"] == 1
    model = r["model"]
    assert 0 < model["params_trainable"] < model["params_total"]
    assert model["tokens_per_sample"] == model["prompt_tokens"] + model["patch_tokens"]
    assert model["flops_per_step"] > 0
    data = r["data"]
    assert data["steps_per_epoch"] == 12 and data["samples"]["test"] == 2880 - 12 + 1
    m = r["measured"]
    for key in ("mean", "median", "p90", "min", "max"):
        assert m["step_s"][key] > 0
    assert m["step_s"]["min"] <= m["step_s"]["median"] <= m["step_s"]["max"]
    assert 0 <= m["data_wait_s"] < m["step_s"]["mean"]
    assert m["compute_s"] == pytest.approx(m["step_s"]["mean"] - m["data_wait_s"])
    assert m["samples_per_s"] == pytest.approx(16 / m["step_s"]["mean"])
    assert m["tokens_per_s"] == pytest.approx(m["samples_per_s"] * model["tokens_per_sample"])
    assert m["mfu"] is None and m["tflops_per_s"] > 0  # MFU only on GPUs
    assert m["peak_memory_mb"]["peak_rss_mb"] > 0
    assert m["checkpoint_s"]["state"] > 0
    assert len(m["eval"]["batch_s"]) == 2 and m["eval"]["batch_samples"] == [256, 256]
    assert m["eval"]["steady_sample_s"] == pytest.approx(m["eval"]["batch_s"][1] / 256)
    p = r["projection"]
    assert p["steps_per_epoch"] == 12 and p["itr"] == 2
    assert p["train_epoch_s"] == pytest.approx(12 * m["step_s"]["mean"])
    assert p["first_train_epoch_s"] == pytest.approx(p["train_epoch_s"] + m["warmup_extra_s"])
    assert p["run"]["epochs"] == 3 and len(p["run"]["per_epoch"]) == 3
    assert p["total_s"] == pytest.approx(2 * p["run"]["total_s"])
    assert p["early_stop_best_case"]["epochs"] == 3  # patience 3 cannot stop a 3-epoch run early
    assert p["val_pass_s"] > 0 and p["epochs_per_hour"] > 0
    # val and test hold the same number of windows here: the same projected pass
    assert p["test_pass_s"] == pytest.approx(p["val_pass_s"])
    assert p["val_pass_s"] == pytest.approx(m["eval"]["timed_pass_s"] + (2869 - 512) * m["eval"]["steady_sample_s"])


def test_warmup_is_excluded_from_the_statistics(estimate):
    m = estimate["report"]["measured"]
    assert len(m["warmup_step_s"]) == 2 and m["step_s"]["n"] == 3
    assert m["warmup_extra_s"] == pytest.approx(sum(max(0.0, w - m["step_s"]["max"]) for w in m["warmup_step_s"]))


def test_warmup_charge_is_the_excess_over_the_slowest_timed_step():
    """Warm-up steps at the timed steps' speed cost nothing extra; only what exceeds the slowest timed step counts."""
    from timellm_launcher.engine.estimate.estimator import TrainTiming

    timing = TrainTiming(step_s=[1.0, 1.2, 0.8], data_wait_s=[0.0] * 3, warmup_s=[3.0, 1.15, 1.1])
    assert timing.warmup_extra_s == pytest.approx(3.0 - 1.2)
    assert TrainTiming(step_s=[1.0], data_wait_s=[0.0], warmup_s=[]).warmup_extra_s == 0.0


def test_a_slow_first_step_lands_in_the_warmup(ett_root, monkeypatch):
    """A first step made 2 s slower (as compilation would) is charged to the warm-up, never to the steady steps."""
    import time

    import timellm_launcher.engine.train.loop as loop_module
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.estimate.estimator import time_training
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training

    reset_accelerate()
    cfg = config_from_args(build_parser("t").parse_args(["--data", "ETTh1", "--root_path", str(ett_root),
                                                         "--features", "S", *TINY]))
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    real_step, calls = loop_module.train_step, []

    def first_step_slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(2.0)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop_module, "train_step", first_step_slow)
    timing = time_training(setup, accelerator, cfg, warmup=1, measure=3)
    assert len(calls) == 4 and len(timing.step_s) == 3 and len(timing.warmup_s) == 1
    assert timing.warmup_s[0] >= 2.0
    assert timing.warmup_extra_s == pytest.approx(timing.warmup_s[0] - max(timing.step_s))
    assert timing.warmup_extra_s >= 2.0 - max(timing.step_s)
    assert max(timing.step_s) < timing.warmup_s[0]


def test_measure_seconds_extends_the_timed_steps_up_to_the_cap(ett_root):
    """--measure_batches is a minimum: short steps are timed until --measure_seconds have passed (capped)."""
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.estimate.estimator import time_training
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training

    reset_accelerate()
    cfg = config_from_args(build_parser("t").parse_args(["--data", "ETTh1", "--root_path", str(ett_root),
                                                         "--features", "S", *TINY]))
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    assert len(time_training(setup, accelerator, cfg, warmup=1, measure=2).step_s) == 2
    assert len(time_training(setup, accelerator, cfg, warmup=1, measure=2, measure_seconds=1e9,
                             max_steps=6).step_s) == 6


def test_the_estimator_leaves_no_checkpoint_or_results(estimate):
    tmp = estimate["tmp"]
    assert not (tmp / "checkpoints").exists() and not (tmp / "results").exists()
    assert sorted(p.name for p in tmp.rglob("*")) == ["estimate.json", "out"]
    assert not estimate["leftover_temp"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--batch_size", "0"], "error: --batch_size must be a positive integer, got 0"),
    (["--patch_len", "100"], "error: --patch_len 100 is longer than --seq_len 48"),
    (["--data", "nope"], "error: "),
    (["--data_path", "absent.csv"], "error: "),
    (["--batch_size", "100000"], "error: --batch_size 100000 is larger than"),
])
def test_bad_flags_give_the_same_errors_as_run_main(ett_root, tmp_path, capsys, flags, message):
    import estimate_training_time
    import run_main

    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, *flags,
            "--checkpoints", str(tmp_path / "c"), "--output_dir", str(tmp_path / "r")]
    errors = []
    for cli in (run_main, estimate_training_time):
        reset_accelerate()
        assert cli.main(args) == 2
        errors.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert errors[0] == errors[1] and errors[0].startswith(message)
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def test_argparse_errors_match_too(capsys):
    import estimate_training_time
    import run_main

    errors = []
    for cli in (run_main, estimate_training_time):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--features", "X"])
        assert exit_info.value.code == 2
        errors.append(capsys.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1])
    assert errors[0] == errors[1] and "--features" in errors[0]


@pytest.mark.parametrize(("flags", "message"), [
    (["--measure_batches", "0"], "--measure_batches must be a positive integer"),
    (["--warmup_batches", "-1"], "--warmup_batches must be >= 0"),
    (["--eval_batches", "0"], "--eval_batches must be a positive integer"),
])
def test_estimator_flags_are_checked(capsys, flags, message):
    import estimate_training_time

    assert estimate_training_time.main(flags) == 2
    assert message in capsys.readouterr().err


def test_compare_two_tiny_configurations(ett_root, tmp_path, capsys):
    """Two configurations and one that cannot run: the table still holds both estimates and recommends one."""
    import estimate_training_time

    out = tmp_path / "compare.json"
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--max_train_steps", "10",
            "--warmup_batches", "1", "--measure_batches", "2", "--measure_seconds", "0", "--eval_batches", "1",
            "--checkpoints", str(tmp_path / "c"), "--output_dir", str(tmp_path / "r"),
            "--compare", "small=--batch_size 8; broken=--features X; large=--batch_size 32", "--output", str(out)]
    assert estimate_training_time.main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["schema"] == "time-llm-estimate-compare/1"
    by_name = {c["name"]: c for c in result["configs"]}
    assert [c["name"] for c in result["configs"]] == ["small", "broken", "large"]
    assert by_name["small"]["status"] == "ok" and by_name["large"]["status"] == "ok"
    assert by_name["broken"]["status"] == "failed" and "--features" in by_name["broken"]["reason"]
    assert by_name["small"]["estimate"]["config"]["batch_size"] == 8
    assert by_name["large"]["estimate"]["config"]["batch_size"] == 32
    assert by_name["small"]["speedup"] == 1.0
    fastest = min(("small", "large"), key=lambda n: by_name[n]["estimate"]["projection"]["total_s"])
    assert result["recommendation"] == fastest
    assert f"recommendation: {fastest}" in printed and "failed" in printed
    assert all(math.isfinite(by_name[n]["speedup"]) for n in ("small", "large"))
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()
