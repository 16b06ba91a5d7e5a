"""The memory plan (`estimate_training_time.py --plan`): what one process of a configuration needs at its peak, and
the largest micro-batch that fits a device, known before the model is loaded or a GPU is rented.

Counted, not loaded: the model is built on the meta device from the backbone's config, which gives the frozen
weights of the kept layers in the run's dtype, one layer's share of them, and the trainable parameters exactly.

Measured on reduced proxies: the same configuration with 1 and up to 4 backbone layers of the same width and random
weights, each in a fresh single-threaded process (engine/estimate/memory_probe.py) running what an epoch runs:
training steps, the checkpoint saves, a validation and a test pass, on batches of the run's shape. Their peaks
above the built model give what a step adds:

    step(layers, rows) = fixed + rows x (per_row + layers x per_layer_row)

from probes at (1 layer, r rows), (4 layers, r), (1 layer, 2r); two more with --gradient_checkpointing give the
checkpointed backbone's per-layer term. What the saves and the evaluation add above the training peak comes from
the same probes (evaluation: fixed + rows x per_row + layers x per_layer, from a probe with twice the evaluation
rows). The probes' rows are the run's batches on a GPU; on a CPU as many as a step of a few seconds allows, and at
least 4 (the terms are linear in the rows).

Composed for the run: the built model (the probe's, with the frozen layers it lacks added) plus the step at the
run's micro-batch, with the trainable state (fp32 parameters, gradients and Adam's two moments: 16 bytes per
trainable parameter in one plain process) replaced by what DeepSpeed ZeRO-2 keeps on each of the processes (the
module in its half precision, fp32 master weights, gradients and moments partitioned over the processes, or
offloaded to the host, plus its gradient-reduction buckets). The evaluation peak adds the optimizer state that
lives on from training. The process's peak is the larger of the two.

On a CPU the figures are the process's resident set (libraries and data included, as the kernel's OOM killer
counts it); on a GPU, allocated tensors plus an allowance for the CUDA context and the allocator's slack.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import build_data
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.estimate.report import write_report
from timellm_launcher.engine.model_io import DTYPES, build_model, prompt_description
from timellm_launcher.engine.runtime import device_name, repeated_blocks
from timellm_launcher.engine.train.accelerator import load_ds_config, precision_choice, uses_deepspeed

PACKAGE_PARENT = Path(__file__).resolve().parents[3]  # put on the probes' PYTHONPATH
SCHEMA = "time-llm-memory-plan/1"
PROBE_STEP_FLOP = 1e12  # a probe's training step on a CPU: a few seconds
MIN_PROBE_ROWS = 4
MORE_LAYERS = 4
GPU_ALLOWANCE_MB = 1024.0  # CUDA context, kernels and caching-allocator slack beside the allocated tensors
HEADROOM = 0.95  # the share of the device memory a plan fills at most
DEEPSPEED_DEFAULTS = {"reduce_bucket_size": 500_000_000, "overlap_comm": False}  # ZeRO-2 keys left out of a config
MB = 2**20


# ---------------------------------------------------------------------------------------------- counting
@dataclass
class Shapes:
    """What the meta-device model of a configuration says (sizes in MB)."""

    layers: int
    width: int
    precision: str  # "bf16" | "fp16" | "no"
    frozen_mb: float  # every frozen weight of the kept layers, embeddings and norms, in the run's dtype
    layer_mb: float  # one transformer layer of them
    trainable: int  # parameters
    tokens: int  # the LLM's tokens per sample (prompt + patches)
    prompt_tokens: int
    step_flop_per_row: float  # a one-layer training step, for choosing the probes' rows
    uses_llm: bool
    prefix_row_mb: float  # a causal backbone's cached prompt keys and values, per row, all kept layers


def precision_of(cfg: Config) -> str:
    """The run's precision as the accelerator will resolve it (launcher settings included)."""
    return precision_choice(cfg)[0] or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")


def count_shapes(cfg: Config, description: str) -> Shapes:
    precision = precision_of(cfg)
    model = build_model(cfg, description, DTYPES.get(precision, torch.float32), device="meta")
    frozen = [p for p in model.parameters() if not p.requires_grad]
    blocks = repeated_blocks(model.llm) if model.use_llm else None
    layer = sum(p.numel() * p.element_size() for p in blocks[0].parameters()) if blocks is not None else 0
    layer_params = sum(p.numel() for p in blocks[0].parameters()) if blocks is not None else 0
    config = model.llm.config
    heads = config.num_attention_heads
    kv_width = getattr(config, "num_key_value_heads", None) or heads
    kv_width *= getattr(config, "head_dim", None) or config.hidden_size // heads
    prefix = model.prompt.length * 2 * kv_width * len(blocks) * frozen[0].element_size() \
        if blocks is not None and model.causal_llm else 0
    return Shapes(layers=len(blocks) if blocks is not None else 0, width=model.llm.config.hidden_size,
                  precision=precision, frozen_mb=sum(p.numel() * p.element_size() for p in frozen) / MB,
                  layer_mb=layer / MB, trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  tokens=model.sequence_length, prompt_tokens=model.prompt.length,
                  step_flop_per_row=6.0 * layer_params * model.sequence_length, uses_llm=model.use_llm,
                  prefix_row_mb=prefix / MB)


# ---------------------------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class ProbeSpec:
    layers: int
    rows: int
    eval_rows: int  # 0: no evaluation
    checkpointing: bool = False


@dataclass
class Probe:
    """One probe's readings (MB), each the process's peak so far (engine/estimate/memory_probe.py)."""

    spec: ProbeSpec
    static_mb: float
    train_peak_mb: float
    save_peak_mb: float
    eval_peak_mb: float

    @property
    def step_mb(self) -> float:
        return self.train_peak_mb - self.static_mb


def probe_config(cfg: Config, spec: ProbeSpec, precision: str) -> dict[str, Any]:
    """The run's flags for a proxy: fewer layers, random weights of the same width (a random backbone of a
    pretrained source keeps its config as it is), one plain process, no compilation."""
    return {**cfg.to_dict(), "llm_layers": max(1, spec.layers), "llm_init": "random",
            "llm_dim": cfg.llm_dim if cfg.llm_init == "random" else 0, "gradient_checkpointing": spec.checkpointing,
            "mixed_precision": precision, "use_amp": False, "deepspeed": False, "offload_optimizer": "none",
            "compile": False, "grad_accum": 1, "num_workers": 0, "resume": "", "log_with": "none"}


def run_probe(cfg: Config, spec: ProbeSpec, precision: str) -> Probe:
    payload = json.dumps({"config": probe_config(cfg, spec, precision), "rows": spec.rows,
                          "eval_rows": spec.eval_rows})
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"  # one thread allocates in one order: the peaks repeat (two threads: +-5% apart)
    proc = subprocess.run([sys.executable, "-m", "timellm_launcher.engine.estimate.memory_probe", payload],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        if proc.returncode in (-9, 137):
            reason = "killed (SIGKILL), most likely out of host memory"
        raise UserError(f"--plan: the {spec.layers}-layer probe ({spec.rows} rows) failed: {reason}")
    reading = json.loads(proc.stdout.strip().splitlines()[-1])
    return Probe(spec, reading["static_mb"], reading["train_peak_mb"], reading["save_peak_mb"],
                 reading["eval_peak_mb"])


def probe_rows(cfg: Config, shapes: Shapes, on_gpu: bool) -> tuple[int, int]:
    """(training rows, evaluation rows) of the probes: the run's batches on a GPU; on a CPU as many as a step of a
    few seconds allows, but at least MIN_PROBE_ROWS, whose differences stand out of the allocator's noise."""
    if on_gpu:
        return cfg.batch_size, cfg.eval_batch_size
    affordable = PROBE_STEP_FLOP / max(shapes.step_flop_per_row, 1.0)  # rows; evaluation costs a third
    return (max(MIN_PROBE_ROWS, min(cfg.batch_size, int(affordable))),
            max(MIN_PROBE_ROWS, min(cfg.eval_batch_size, int(3 * affordable))))


def probe_specs(shapes: Shapes, rows: int, eval_rows: int) -> list[ProbeSpec]:
    """(1 layer, r, e); one probe doubling the rows, one the evaluation rows, one with more layers (up to
    MORE_LAYERS: the per-layer term is a difference of two peaks, and more layers lift it out of their noise);
    the same two layer counts with checkpointing."""
    first = 1 if shapes.uses_llm else 0
    specs = [ProbeSpec(first, rows, eval_rows), ProbeSpec(first, 2 * rows, eval_rows),
             ProbeSpec(first, rows, 2 * eval_rows)]
    if shapes.layers >= 2:
        more = min(shapes.layers, MORE_LAYERS)
        specs += [ProbeSpec(more, rows, eval_rows), ProbeSpec(1, rows, 0, True), ProbeSpec(more, rows, 0, True)]
    return specs


def run_probes(cfg: Config, specs: list[ProbeSpec], precision: str, on_gpu: bool) -> dict[ProbeSpec, Probe]:
    """Each probe in its own process; two at a time on a CPU (their peaks are their own), one at a time on a GPU."""
    with ThreadPoolExecutor(max_workers=1 if on_gpu else 2) as pool:
        probes = list(pool.map(lambda spec: run_probe(cfg, spec, precision), specs))
    return {p.spec: p for p in probes}


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class Linear:
    """fixed + rows x (per_row + layers x per_layer_row), in MB."""

    fixed: float
    per_row: float
    per_layer_row: float

    def at(self, layers: int, rows: int) -> float:
        return self.fixed + rows * self.per_row_at(layers)

    def per_row_at(self, layers: int) -> float:
        return self.per_row + layers * self.per_layer_row


@dataclass
class Fit:
    """What the probes say: the built model, what a training step adds above it, and what the checkpoint saves and
    the evaluation then add above the training peak (evaluation: fixed + per_row x rows + per_layer x layers)."""

    static_mb: float  # the built model at `static_layers` layers
    static_layers: int
    train: Linear
    train_checkpointed: Linear | None
    save_mb: float
    evaluation: Linear  # per_layer_row holds the per-layer term (not per row)

    def evaluation_at(self, layers: int, rows: int) -> float:
        return max(0.0, self.evaluation.fixed + rows * self.evaluation.per_row + layers * self.evaluation.per_layer_row)


def fit(probes: dict[ProbeSpec, Probe], rows: int, eval_rows: int, shapes: Shapes) -> Fit:
    """The terms from the probes. A slope measured below zero (within the machine's noise) counts as 0."""
    first = 1 if shapes.uses_llm else 0
    base = probes[ProbeSpec(first, rows, eval_rows)]
    more_rows = probes[ProbeSpec(first, 2 * rows, eval_rows)]
    more_eval = probes[ProbeSpec(first, rows, 2 * eval_rows)]
    more = min(shapes.layers, MORE_LAYERS)
    two = probes.get(ProbeSpec(more, rows, eval_rows))
    per_layer_row = max(0.0, (two.step_mb - base.step_mb) / rows / (more - first)) if two is not None else 0.0
    per_row = max(0.0, (more_rows.step_mb - base.step_mb) / rows - first * per_layer_row)
    train = Linear(max(0.0, base.step_mb - rows * (per_row + first * per_layer_row)), per_row, per_layer_row)
    checkpointed = None
    if two is not None:
        one_c, two_c = probes[ProbeSpec(1, rows, 0, True)], probes[ProbeSpec(more, rows, 0, True)]
        layer_row = max(0.0, (two_c.step_mb - one_c.step_mb) / rows / (more - 1))
        checkpointed = Linear(max(0.0, one_c.step_mb - rows * (per_row + layer_row)), per_row, layer_row)

    def added_by_eval(p: Probe) -> float:
        return p.eval_peak_mb - p.save_peak_mb

    eval_row = max(0.0, (added_by_eval(more_eval) - added_by_eval(base)) / eval_rows)
    eval_layer = max(0.0, added_by_eval(two) - added_by_eval(base)) / (more - first) if two is not None else 0.0
    evaluation = Linear(added_by_eval(base) - eval_rows * eval_row - first * eval_layer, eval_row, eval_layer)
    return Fit(base.static_mb, first, train, checkpointed, max(0.0, base.save_peak_mb - base.train_peak_mb),
               evaluation)


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class Target:
    """Where the run is planned for: the device kind and memory, the processes and DeepSpeed's settings."""

    kind: str  # "cpu" | "cuda"
    memory_mb: float
    source: str  # where the memory figure came from
    processes: int
    zero_stage: int | None  # None: no DeepSpeed
    offload: bool
    bucket_elements: int = 0  # ZeRO's reduce_bucket_size
    buckets: int = 0  # 2 with overlap_comm


@dataclass
class Plan:
    """One process's training peak by part, then what saving and evaluating add (MB)."""

    components: dict[str, float]
    save_mb: float  # added by the checkpoint saves after the training peak
    eval_mb: float  # added by a validation and a test pass after those
    host_mb: float  # held on the host besides the device: an offloaded optimizer state
    per_row_mb: float  # a training row more
    eval_per_row_mb: float  # an evaluation row more
    rows: int
    eval_rows: int

    @property
    def train_mb(self) -> float:
        return sum(self.components.values())

    @property
    def peak_mb(self) -> float:
        return self.train_mb + self.save_mb + self.eval_mb

    def largest_rows(self, limit_mb: float) -> int:
        """The largest micro-batch whose peak stays within `limit_mb` (0: not even one row)."""
        fixed = self.peak_mb - self.rows * self.per_row_mb
        if self.per_row_mb <= 0:
            return self.rows if fixed <= limit_mb else 0
        return max(0, math.floor((limit_mb - fixed) / self.per_row_mb))

    def largest_eval_rows(self, limit_mb: float) -> int:
        fixed = self.peak_mb - self.eval_rows * self.eval_per_row_mb
        if self.eval_per_row_mb <= 0:
            return self.eval_rows if fixed <= limit_mb else 0
        return max(0, math.floor((limit_mb - fixed) / self.eval_per_row_mb))


def trainable_state(n: int, precision: str, target: Target) -> tuple[dict[str, float], float]:
    """The trainable part in MB: ({params, grads, adam, buckets} on the device, what the host holds)."""
    if target.zero_stage is None:
        return {"params": 4 * n / MB, "grads": 4 * n / MB, "adam": 8 * n / MB, "buckets": 0.0}, 0.0
    half = 2 if precision in ("bf16", "fp16") else 4  # DeepSpeed holds the whole module in the half precision
    share = target.processes if target.zero_stage >= 1 else 1
    master, adam = 4 * n / share / MB, 8 * n / share / MB
    grads = 4 * n / (share if target.zero_stage >= 2 else 1) / MB
    # gradient-reduction buffers of reduce_bucket_size elements each; a CPU touches only the pages it fills
    elements = target.bucket_elements if target.kind == "cuda" else min(target.bucket_elements, n)
    device = {"params": half * n / MB, "buckets": target.buckets * elements * half / MB}
    if target.offload:
        return {**device, "grads": 0.0, "adam": 0.0}, master + grads + adam
    return {**device, "grads": grads, "adam": master + adam}, 0.0


def compose(shapes: Shapes, fitted: Fit, target: Target, cfg: Config, *, checkpointing: bool,
            probed_on_gpu: bool) -> Plan:
    """The run's per-process peaks from the counted shapes, the fitted terms and the trainable state."""
    layers, n = shapes.layers, shapes.trainable
    plain, _ = trainable_state(n, shapes.precision, dataclasses.replace(target, zero_stage=None))
    state, host = trainable_state(n, shapes.precision, target)
    built = fitted.static_mb + (layers - fitted.static_layers) * shapes.layer_mb  # the probe's model, all layers
    runtime = built - shapes.frozen_mb - plain["params"]  # libraries, data, tokenizer, prompt tables
    if target.kind == "cuda":  # a CPU probe's process memory stays on the host; the GPU holds its context
        runtime = (runtime if probed_on_gpu else 0.0) + GPU_ALLOWANCE_MB
    step = fitted.train_checkpointed if checkpointing and fitted.train_checkpointed is not None else fitted.train
    rows = cfg.batch_size
    measured_state = plain["grads"] + plain["adam"]  # the probes' optimizer state sits in their fixed term
    # a causal backbone trains with the prompt's keys and values cached (models/time_llm.py), but not when
    # activation checkpointing recomputes the layers (one joint pass then)
    prefix = rows * shapes.prefix_row_mb if not checkpointing else 0.0
    activations = rows * step.per_row_at(layers)
    components = {"runtime": runtime, "frozen": shapes.frozen_mb, **state, "prefix_cache": min(prefix, activations),
                  "activations": max(0.0, activations - prefix), "other": max(0.0, step.fixed - measured_state)}
    return Plan(components=components, save_mb=fitted.save_mb,
                eval_mb=fitted.evaluation_at(layers, cfg.eval_batch_size), host_mb=host,
                per_row_mb=step.per_row_at(layers), eval_per_row_mb=fitted.evaluation.per_row, rows=rows,
                eval_rows=cfg.eval_batch_size)


# ---------------------------------------------------------------------------------------------- the target
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(gib|gb|g|mib|mb|m|tib|tb|t)?\s*$", re.IGNORECASE)


def parse_size_mb(text: str) -> float:
    """'24GB', '80 GiB', '16000MB', '1.5T' (binary units; a bare number is GB) in MB."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--device_memory {text!r}: give a size such as 24GB, 80GiB or 16000MB")
    unit = (match.group(2) or "g").lower()[0]
    return float(match.group(1)) * {"m": 1, "g": 1024, "t": 1024**2}[unit]


def host_memory_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB


def build_target(cfg: Config, opts) -> Target:
    kind = opts.plan_device if opts.plan_device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if opts.device_memory:
        memory, source = parse_size_mb(opts.device_memory), "--device_memory"
    elif kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--plan_device cuda: no GPU here to read its memory from; give --device_memory (e.g. 80GB)")
        memory = torch.cuda.get_device_properties(0).total_memory / MB
        source = torch.cuda.get_device_name(0)
    else:
        memory, source = host_memory_mb(), "host RAM"
    processes = opts.plan_processes or int(os.environ.get("WORLD_SIZE", "1"))
    if processes < 1:
        raise UserError(f"--plan_processes must be a positive integer, got {processes}")
    if not uses_deepspeed(cfg):
        if cfg.offload_optimizer != "none":
            raise UserError("--offload_optimizer cpu needs DeepSpeed (--deepspeed, or accelerate launch "
                            "--use_deepspeed)")
        return Target(kind, memory, source, processes, None, False)
    zero = load_ds_config(cfg)["zero_optimization"]
    elements = zero.get("reduce_bucket_size", DEEPSPEED_DEFAULTS["reduce_bucket_size"])
    overlap = zero.get("overlap_comm", DEEPSPEED_DEFAULTS["overlap_comm"])
    if not isinstance(elements, (int, float)):  # "auto" and the like: DeepSpeed's default
        elements = DEEPSPEED_DEFAULTS["reduce_bucket_size"]
    return Target(kind, memory, source, processes, int(zero["stage"]), cfg.offload_optimizer == "cpu",
                  int(elements), 2 if overlap else 1)


# ---------------------------------------------------------------------------------------------- the verdict
def batch_advice(cfg: Config, plan: Plan, target: Target, limit_mb: float, most: int) -> dict[str, Any] | None:
    """The largest micro-batch within `limit_mb` (at most `most`, the training samples of a process) and the
    --batch_size/--grad_accum that keep this run's global batch with it; None when not even one row fits."""
    largest = min(plan.largest_rows(limit_mb), most)
    if largest < 1:
        return None
    share = cfg.batch_size * cfg.grad_accum  # one process's samples per optimizer step
    accum = math.ceil(share / largest)
    micro = math.ceil(share / accum)
    return {"largest_micro_batch": largest, "batch_size": micro, "grad_accum": accum,
            "global_batch": micro * accum * target.processes, "asked_global_batch": share * target.processes}


def decide(cfg: Config, plans: dict[str, Plan], target: Target, train_samples: int) -> dict[str, Any]:
    """Fits or not; the largest micro-batch (and --grad_accum) that fits, with --gradient_checkpointing where the
    run does not use it and it makes a difference; a smaller evaluation batch where that alone is in the way."""
    limit = target.memory_mb * HEADROOM
    most = max(1, train_samples // target.processes)
    plan = plans["checkpointed" if cfg.gradient_checkpointing and "checkpointed" in plans else "plain"]
    result: dict[str, Any] = {"limit_mb": limit, "fits": plan.peak_mb <= limit,
                              "batch": batch_advice(cfg, plan, target, limit, most)}
    if not cfg.gradient_checkpointing and "checkpointed" in plans and not result["fits"]:
        result["with_checkpointing"] = batch_advice(cfg, plans["checkpointed"], target, limit, most)
    eval_rows = plan.largest_eval_rows(limit)
    if not result["fits"] and eval_rows >= 1 and eval_rows < cfg.eval_batch_size:
        result["largest_eval_batch"] = eval_rows
    if result["batch"] is None and result.get("with_checkpointing") is None:
        result["frozen_exceeds"] = plan.components["frozen"] > limit
    return result


def _batch_text(advice: dict[str, Any]) -> str:
    exact = "" if advice["global_batch"] == advice["asked_global_batch"] else \
        f" ({advice['asked_global_batch']} asked)"
    return (f"largest micro-batch {advice['largest_micro_batch']} (--batch_size {advice['batch_size']} "
            f"--grad_accum {advice['grad_accum']} keeps the global batch {advice['global_batch']}{exact})")


def verdict_text(verdict: dict[str, Any]) -> str:
    parts = ["fits" if verdict["fits"] else "does not fit"]
    if verdict["batch"] is not None:
        parts.append(_batch_text(verdict["batch"]))
    if verdict.get("with_checkpointing") is not None:
        parts.append("with --gradient_checkpointing: " + _batch_text(verdict["with_checkpointing"]))
    if verdict.get("largest_eval_batch"):
        parts.append(f"or keep the batch and evaluate with --eval_batch_size {verdict['largest_eval_batch']}")
    if verdict["batch"] is None and verdict.get("with_checkpointing") is None:
        parts.append("the frozen weights alone exceed the device: more memory or fewer --llm_layers"
                     if verdict.get("frozen_exceeds") else
                     "not even one row fits: more memory, fewer --llm_layers, or bf16 (--mixed_precision bf16)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- the command
def make_plan(cfg: Config, opts) -> dict[str, Any]:
    """Count, probe, fit, compose and decide; returns the plan report (the JSON written with --output)."""
    target = build_target(cfg, opts)
    data = build_data(cfg.data_options())  # the data flags are checked as training checks them
    shapes = count_shapes(cfg, prompt_description(cfg, data))
    on_gpu = torch.cuda.is_available()
    rows, eval_rows = probe_rows(cfg, shapes, on_gpu)
    specs = probe_specs(shapes, rows, eval_rows)
    print(f"memory plan: {len(specs)} probes of 1-{max(s.layers for s in specs)} layer(s) in fresh processes "
          f"({rows} training / {eval_rows} evaluation rows)...", flush=True)
    probes = run_probes(cfg, specs, shapes.precision, on_gpu)
    fitted = fit(probes, rows, eval_rows, shapes)
    plans = {"plain": compose(shapes, fitted, target, cfg, checkpointing=False, probed_on_gpu=on_gpu)}
    if fitted.train_checkpointed is not None:
        plans["checkpointed"] = compose(shapes, fitted, target, cfg, checkpointing=True, probed_on_gpu=on_gpu)
    probe_device = torch.device("cuda" if on_gpu else "cpu")
    return {
        "schema": SCHEMA, "status": "ok", "config": cfg.to_dict(),
        "target": dataclasses.asdict(target),
        "probes": {"device": probe_device.type, "name": device_name(probe_device), "rows": rows,
                   "eval_rows": eval_rows,
                   "runs": [dataclasses.asdict(p) for p in probes.values()]},
        "shapes": dataclasses.asdict(shapes),
        "fit": dataclasses.asdict(fitted),
        "plans": {name: {**dataclasses.asdict(plan), "train_mb": plan.train_mb, "peak_mb": plan.peak_mb}
                  for name, plan in plans.items()},
        "run_plan": "checkpointed" if cfg.gradient_checkpointing and "checkpointed" in plans else "plain",
        "verdict": decide(cfg, plans, target, len(data.datasets["train"])),
    }


def gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB" if mb >= 1000 else f"{mb:.0f} MB"


LABELS = {"runtime": "runtime (libraries, data, tokenizer; a GPU's context)", "frozen": "frozen weights",
          "params": "trainable parameters", "grads": "gradients", "adam": "Adam moments (+ fp32 master)",
          "buckets": "DeepSpeed gradient buckets", "prefix_cache": "prompt prefix cache (keys, values)",
          "activations": "activations", "other": "other step buffers"}


def format_plan(report: dict[str, Any]) -> str:
    """The plan as a table, then the verdict."""
    cfg, target, shapes = report["config"], report["target"], report["shapes"]
    plans, run, verdict = report["plans"], report["run_plan"], report["verdict"]
    plan = plans[run]
    ds = f"ZeRO-{target['zero_stage']}{' + optimizer offload' if target['offload'] else ''}" \
        if target["zero_stage"] is not None else "off"
    probes = report["probes"]
    layers = max(run["spec"]["layers"] for run in probes["runs"])
    lines = [f"memory plan  {cfg['data']} (features {cfg['features']}) | {cfg['llm_model']} {shapes['layers']} "
             f"layer(s), {shapes['width']} wide, precision {shapes['precision']} | {target['processes']} process(es), "
             f"DeepSpeed {ds} | for {target['kind']} with {gb(target['memory_mb'])} ({target['source']})",
             f"  probes    {len(probes['runs'])} fresh processes on {probes['device']}: {probes['name']} "
             f"(1-{layers} layers, random weights; {probes['rows']} training / {probes['eval_rows']} evaluation rows)",
             f"  per process, training at micro-batch {cfg['batch_size']} x {shapes['tokens']} tokens"
             f"{' (--gradient_checkpointing)' if run == 'checkpointed' else ''}:"]
    notes = {"frozen": f"{shapes['layers']} layers + embeddings; one layer {gb(shapes['layer_mb'])}",
             "params": f"{shapes['trainable'] / 1e6:.1f} M", "activations": f"{plan['per_row_mb']:.1f} MB per row"}
    for key, value in plan["components"].items():
        if value or key in ("frozen", "activations"):
            lines.append(f"    {LABELS[key]:<52} {gb(value):>10}  {notes.get(key, '')}".rstrip())
    lines.append(f"    {'training peak':<52} {gb(plan['train_mb']):>10}")
    lines.append(f"  {'+ saving the checkpoints':<54} {gb(plan['save_mb']):>10}")
    lines.append(f"  {'+ validation and test (batch ' + str(cfg['eval_batch_size']) + ')':<54} "
                 f"{gb(plan['eval_mb']):>10}  {plan['eval_per_row_mb']:.1f} MB per row")
    if plan["host_mb"]:
        lines.append(f"  {'host memory for the offloaded optimizer':<54} {gb(plan['host_mb']):>10}")
    lines.append(f"  {'peak per process':<54} {gb(plan['peak_mb']):>10}  of {gb(target['memory_mb'])} "
                 f"({100 * HEADROOM:.0f}% usable: {gb(verdict['limit_mb'])})")
    for name, other in plans.items():
        if name != run:
            label = f"{'with' if name == 'checkpointed' else 'without'} --gradient_checkpointing instead"
            lines.append(f"  {label:<54} {gb(other['peak_mb']):>10}  activations {other['per_row_mb']:.1f} MB per row")
    lines.append("verdict   " + verdict_text(verdict))
    return "\n".join(lines)


def plan_command(cfg: Config, opts) -> None:
    """estimate_training_time.py --plan: print the plan, write its JSON with --output."""
    report = make_plan(cfg, opts)
    print(format_plan(report))
    if opts.output:
        print(f"plan: {write_report(opts.output, report)}")
