"""What a run tells: its header, one line per epoch, the content of results.json, the result table's entry and the
closing summary. Plain data in, text or dicts out; the trainer decides when each is said or written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from timellm_launcher.core.files import write_json, write_text
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.evaluate.baselines import baseline_lines, m4_baseline
from timellm_launcher.engine.evaluate.intervals import coverage_line
from timellm_launcher.engine.report.plots import PLOT_NAME, plot_run
from timellm_launcher.engine.report.tracking import final_values

RESULTS_TABLE = "result_long_term_forecast.txt"
RESULTS_FILE = "results.json"


def header(cfg: Config, setup: Any, acc: Accelerator, run_name: str, precision_reason: str,
           deepspeed_stage: int | None) -> str:
    """The run's name, data, model, processes and precision, and how many steps an epoch trains (`setup`: the
    trainer's TrainingSetup)."""
    data, model = setup.data, setup.raw_model
    series = f"{len(data.series_ids):,} series, " if getattr(data, "series_ids", None) is not None else ""
    if model.use_llm:
        llm = model.llm.config
        backbone = (f"backbone {cfg.llm_model} ({llm.num_hidden_layers} layers, {llm.hidden_size} wide) | "
                    f"{setup.n_trainable:,} trainable of {setup.n_total:,} parameters | LLM sees "
                    f"{model.prompt.length} prompt + {model.num_patches} patch tokens")
    else:
        backbone = (f"no LLM (--llm_model none, the ablation: reprogrammed patches, normalised, go to the head) | "
                    f"{setup.n_trainable:,} trainable of {setup.n_total:,} parameters")
    deepspeed = f"ZeRO-{deepspeed_stage}" if deepspeed_stage is not None else "off"
    cap = f", capped at {setup.steps_per_epoch:,} of {setup.full_epoch_steps:,} by --max_train_steps" \
        if setup.steps_per_epoch < setup.full_epoch_steps else ""
    return (f"run {run_name}\n  data {data.path.name}: {series}{data.summary()['samples']} samples, "
            f"{len(data.columns)} variable(s) | {backbone} | {acc.num_processes} process(es), precision "
            f"{acc.mixed_precision} ({precision_reason}), DeepSpeed {deepspeed}, device {acc.device}\n"
            f"  training {setup.steps_per_epoch:,} optimizer steps per epoch{cap} x {cfg.train_epochs} epoch(s) "
            f"(batch {cfg.batch_size} x accum {cfg.grad_accum} x {acc.num_processes} process(es))")


def epoch_line(cfg: Config, record: dict[str, Any], val: dict[str, float] | None) -> str:
    """One epoch at a glance: losses, validation (and test under --test_every), learning rate, speed."""
    smape = f" smape {val['smape']:.3f}" if val and cfg.selection_metric == "smape" else ""
    scored = f"val mse {val['mse']:.4f} mae {val['mae']:.4f}{smape}" if val else "val -"
    tested = f" | test mse {record['test_mse']:.4f}" if record["test_mse"] is not None else ""
    lr = f"{record['lr']:.2e}" + (f"->{record['lr_end']:.2e}" if record["lr_end"] != record["lr"] else "")
    return (f"epoch {record['epoch']}/{cfg.train_epochs} | train {cfg.loss.lower()} {record['train_loss']:.4f} | "
            f"{scored}{tested} | lr {lr} | {record['seconds']:.1f} s | {record['samples_per_s']:.1f} samples/s | "
            f"{record['step_s'] * 1000:.0f} ms/step{' | best' if record['is_best'] else ''}")


def result_record(cfg: Config, setup: Any, acc: Accelerator, progress: dict[str, Any], *, run_name: str,
                  seed: int, description: str, test: dict[str, Any], baselines: dict[str, dict],
                  timing: dict[str, float], memory: dict[str, float], precision_reason: str,
                  deepspeed_stage: int | None, calibration: dict | None, run_id: str | None, best_path: Path,
                  results_folder: Path) -> dict[str, Any]:
    """The content of results.json (README "Outputs"); `setup`: the trainer's TrainingSetup."""
    history, validations = progress["history"], progress["validations"]
    best = next((v for v in reversed(validations) if v["is_best"]), None)  # selection may be sMAPE (M4)
    train_seconds = sum(h["seconds"] for h in history)
    samples = sum(h["steps"] for h in history) * cfg.grad_accum * cfg.batch_size * acc.num_processes
    llm = setup.raw_model.llm
    return {
        "setting": run_name, "seed": seed, "config": cfg.to_dict(), "data": setup.data.summary(),
        "model": {"backbone": cfg.llm_model, "source": llm.name_or_path or cfg.llm_init,
                  "description": description,
                  "llm_init": cfg.llm_init, "llm_layers": llm.config.num_hidden_layers,
                  "llm_dim": llm.config.hidden_size, "prompt_tokens": setup.raw_model.prompt.length,
                  "patch_tokens": setup.raw_model.num_patches},
        "params": {"total": setup.n_total, "trainable": setup.n_trainable},
        "metrics": {"val": {"mse": best["val_mse"] if best else None, "mae": best["val_mae"] if best else None,
                            "baselines": baselines.get("val")},
                    "test": {**test, "baselines": baselines.get("test", m4_baseline(test))}},
        "best_epoch": progress["best_epoch"] or None,
        "best_step": progress["best_step"] or None,
        "history": history,
        "validations": validations,
        "timing": {"train_epoch_s": [h["seconds"] for h in history],
                   "samples_per_s": samples / train_seconds if train_seconds else None, **timing},
        "memory": memory,
        "precision": {"chosen": acc.mixed_precision, "reason": precision_reason},
        "distributed": {"num_processes": acc.num_processes, "deepspeed_stage": deepspeed_stage,
                        "mixed_precision": acc.mixed_precision, "offload_optimizer": cfg.offload_optimizer,
                        "gradient_checkpointing": cfg.gradient_checkpointing, "grad_accum": cfg.grad_accum,
                        "device": str(acc.device)},
        "intervals": None if calibration is None else {
            "method": "split conformal, locally adaptive: half width = half_widths[level][step] x (the input "
                      "window's standard deviation + floor), in scaled units (engine/evaluate/intervals.py)",
            **calibration},
        "run_id": run_id,
        "checkpoint": os.path.relpath(best_path.resolve(), results_folder.resolve()),
        "checkpoint_absolute": str(best_path.resolve()),
    }


def closing_lines(cfg: Config, test: dict[str, Any], baselines: dict[str, dict], best_epoch: int,
                  results: Path, best_path: Path) -> list[str]:
    """The summary after the test: the scores beside the baselines, the intervals' coverage, where things are."""
    lines = [f"test  mse {test['mse']:.4f}  mae {test['mae']:.4f}  ({test['samples']} samples, best epoch "
             f"{best_epoch or 'from checkpoint'})"]
    if baselines.get("test"):
        lines += baseline_lines("test", test, baselines["test"])
    if "intervals" in test:
        lines.append(coverage_line(test["intervals"]))
    if "per_series" in test:
        mse = sorted(test["per_series"]["mse"])
        lines.append(f"per series: {len(mse):,} scored, mse median {mse[len(mse) // 2]:.4f}, worst {mse[-1]:.4f} "
                     "(results.json metrics.test.per_series, also in each series' own units)")
    lines.append(f"results: {results}\ncheckpoint: {best_path}")
    if "owa" in test:
        lines.append(f"M4 {cfg.seasonal_patterns}: smape {test['smape']:.3f}  mase {test['mase']:.3f}  "
                     f"owa {test['owa']:.3f}  (Naive2 smape {test['naive2_smape']:.3f}, "
                     f"mase {test['naive2_mase']:.3f})")
    return lines


def write_outputs(cfg: Config, setup: Any, acc: Accelerator, result: dict[str, Any], test: dict[str, Any],
                  baselines: dict[str, dict], *, tracker: Any, progress: Any, run_name: str, results_folder: Path,
                  best_path: Path) -> list[str]:
    """results.json (test_results.json under --is_training 0) with the plot, the table entry and the tracker's final
    values; returns the closing summary's lines."""
    prefix = "" if cfg.is_training else "test_"
    if cfg.plot_windows:
        result["plot"] = str(plot_run(setup.raw_model, setup.data, cfg.plot_windows, acc, results_folder,
                                      progress.history, run_name, prefix + PLOT_NAME))
    if tracker is not None:
        tracker.log(final_values(test), step=progress.global_step)
        tracker.finish()
    out = write_results(results_folder, result, prefix + RESULTS_FILE)
    record_in_table(Path(cfg.output_dir), run_name, test)
    return closing_lines(cfg, test, baselines, progress.best_epoch, out, best_path)


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
