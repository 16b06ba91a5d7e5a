"""The estimator's terminal table and JSON file (schema in the README, "Estimating run time")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from timellm_launcher.core.errors import UserError
from timellm_launcher.core.files import write_json
from timellm_launcher.engine.progress import duration


def memory_text(memory: dict[str, float]) -> str:
    if "gpu_max_allocated_mb" in memory:
        text = f"GPU max allocated {memory['gpu_max_allocated_mb']:,.0f} MB"
        if "gpu_total_mb" in memory:
            text += f" of {memory['gpu_total_mb']:,.0f} MB"
        return text
    return f"peak RSS {memory['peak_rss_mb']:,.0f} MB"


def format_report(report: dict[str, Any]) -> str:
    """The readable table printed after an estimate."""
    cfg, dev, model, data = report["config"], report["device"], report["model"], report["data"]
    m, p = report["measured"], report["projection"]
    step = m["step_s"]
    ds = f"ZeRO-{dev['deepspeed_stage']}" if dev["deepspeed_stage"] is not None else "off"
    speed = f"{m['samples_per_s']:,.1f} samples/s | {m['tokens_per_s']:,.0f} LLM tokens/s"
    if m["tflops_per_s"] is not None:
        speed += f" | {m['tflops_per_s']:.3g} TFLOP/s"
    if m["mfu"] is not None:
        speed += f" | MFU {100 * m['mfu']:.1f}% of {m['peak_tflops']:g}"
    ckpt = m["checkpoint_s"]
    run, early = p["run"], p["early_stop_best_case"]
    cap = f", capped by --max_train_steps {cfg['max_train_steps']}" if cfg["max_train_steps"] else ""
    saves = f"state {ckpt['state']:.2f} s, best weights {ckpt['weights']:.2f} s" if ckpt else "-"
    first_epoch = run["per_epoch"][0]
    epoch_parts = "train"
    if first_epoch["validations"] or run["per_epoch"][-1]["validations"]:
        epoch_parts += " + validation"
    if any(e["tests"] for e in run["per_epoch"]):
        epoch_parts += " + test"
    lines = [
        f"estimate  {cfg['data']} (features {cfg['features']}) | {model['backbone']} {model['llm_layers']} layer(s), "
        f"{model['llm_dim']} wide | {dev['num_processes']} process(es), precision {dev['mixed_precision']}, "
        f"DeepSpeed {ds} | {dev['type']}: {dev['name']}",
        f"  data      train {data['samples']['train']:,} samples -> {data['steps_per_epoch']:,} optimizer steps/epoch "
        f"(batch {cfg['batch_size']} x accum {cfg['grad_accum']} x {dev['num_processes']} process(es)"
        f"{cap})",
        f"            val {data['samples']['val']:,} / test {data['samples']['test']:,} samples -> "
        f"{data['batches_per_process']['val']} / {data['batches_per_process']['test']} batches of "
        f"{cfg['eval_batch_size']}",
        f"  model     {model['params_trainable']:,} trainable of {model['params_total']:,} parameters | LLM sees "
        f"{model['prompt_tokens']} prompt + {model['patch_tokens']} patch tokens x {data['n_vars']} variable(s) | "
        f"{model['flops_per_step'] / 1e12 if model['flops_per_step'] else float('nan'):.3g} TFLOP/step",
        f"measured  ({report['estimator']['warmup_batches']} warm-up steps excluded, {step['n']} timed)",
        f"  step      mean {step['mean']:.4f} s | median {step['median']:.4f} | p90 {step['p90']:.4f} | "
        f"min {step['min']:.4f} | max {step['max']:.4f}",
        f"  split     waiting for data {1000 * m['data_wait_s']:.2f} ms ({100 * m['data_wait_s'] / step['mean']:.1f}%)"
        f" | compute {m['compute_s']:.4f} s",
        f"  speed     {speed}",
        f"  warm-up   +{m['warmup_extra_s']:.2f} s above the slowest timed step, charged to epoch 1",
        f"  eval      {len(m['eval']['batch_s'])} batch(es) in {m['eval']['timed_pass_s']:.2f} s (first "
        f"{m['eval']['batch_s'][0]:.3f} s), then {1000 * m['eval']['steady_sample_s']:.2f} ms/sample -> "
        f"validation pass {duration(p['val_pass_s'])}, test pass {duration(p['test_pass_s'])}",
        f"  save      {saves}",
        f"  memory    {memory_text(m['peak_memory_mb'])}",
        "projection",
        f"  train     {duration(p['train_epoch_s'])} per epoch ({duration(p['first_train_epoch_s'])} for epoch 1)",
        f"  epoch     {duration(p['epoch_s'])} mean ({epoch_parts} + checkpoint) -> "
        f"{p['epochs_per_hour']:.2f} epochs/hour",
        f"  run       {run['epochs']} epoch(s) x {p['itr']} itr = {duration(p['total_s'])} "
        f"(setup {duration(run['setup_s'])} and final test {duration(run['final_test_s'])} per itr)",
        f"  early     best case with --patience {cfg['patience']}: stops after epoch {early['epochs']} -> "
        f"{duration(early['total_s'])}",
    ]
    return "\n".join(lines)


def check_output_path(path: str) -> None:
    """Fail before any timing when the JSON could not be written at the end."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"--output {path}: is a folder; give a file name such as estimate.json")
    parent = target.parent if str(target.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"--output {path}: cannot write there")


def write_report(path: str, report: dict[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_json(target, report)
