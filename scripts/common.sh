# shellcheck shell=bash
# Sourced by every benchmark script (source scripts/common.sh "$@"): it picks the Python, builds the
# launcher, and reads the environment every script shares:
#   NUM_PROCESSES=N  processes (GPUs) for accelerate launch; default 1
#   SMOKE=1          a quick CPU run: tiny random GPT-2, 1 epoch of 2 steps, the first horizon only, univariate;
#                    a missing dataset file is replaced by a generated one of the same layout (said on stdout)
#   ESTIMATE=1       time the configuration with estimate_training_time.py instead of training it
#   ROOT_PATH=DIR    folder holding the dataset file (default: the script's ./dataset/... folder)
#   PYTHON=PATH      interpreter (default: ./.venv/bin/python if present, else python3)
# The script's own arguments are passed through to run_main.py after its flags, so they override them.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PASS_THROUGH=("$@")
NUM_PROCESSES="${NUM_PROCESSES:-1}"
SMOKE="${SMOKE:-0}"
ESTIMATE="${ESTIMATE:-0}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SMOKE_ARGS=(--llm_model GPT2 --llm_init random --llm_layers 1 --llm_dim 64 --num_tokens 100 --d_model 8
            --d_ff 16 --n_heads 2 --seq_len 96 --features S --train_epochs 1 --max_train_steps 2 --batch_size 8
            --eval_batch_size 256 --grad_accum 1 --output_dir ./results/smoke --checkpoints ./checkpoints/smoke)
GENERATED_DIRS=()
remove_generated() {
  local dir
  for dir in "${GENERATED_DIRS[@]}"; do rm -rf "$dir"; done
}
trap remove_generated EXIT

# A free unprivileged TCP port for the launcher's rendezvous, chosen now (the kernel's ephemeral range).
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# horizons H1 H2 ...: the horizons to loop over; SMOKE=1 keeps the first.
horizons() {
  if [ "$SMOKE" = 1 ]; then echo "$1"; else echo "$@"; fi
}

# use_dataset DEFAULT_ROOT FILE GENERATOR: sets DATA_ROOT to ROOT_PATH or DEFAULT_ROOT; with SMOKE=1 and the
# file missing there, generates a synthetic FILE of the real layout in a temporary folder (removed at exit).
# A script that needs two files calls it twice: the real one is then linked beside the generated one.
USED_FILES=()
use_dataset() {
  local root="${ROOT_PATH:-$1}" generated=""
  if [ "${#GENERATED_DIRS[@]}" -gt 0 ]; then generated="${GENERATED_DIRS[0]}"; fi
  DATA_ROOT="$root"
  if [ "$SMOKE" = 1 ] && [ ! -e "$root/$2" ]; then
    if [ -z "$generated" ]; then
      generated="$(mktemp -d)"
      GENERATED_DIRS+=("$generated")
      local used
      for used in "${USED_FILES[@]}"; do ln -s "$used" "$generated/"; done
    fi
    echo "SMOKE: $root/$2 not found; using a generated synthetic $2 in $generated"
    "$PYTHON" -m timellm_launcher.data_provider.synthetic "$3" "$generated" > /dev/null
    DATA_ROOT="$generated"
  elif [ -n "$generated" ] && [ -e "$root/$2" ]; then
    ln -s "$(cd "$root" && pwd)/$2" "$generated/"
    DATA_ROOT="$generated"
  fi
  if [ -e "$DATA_ROOT/$2" ]; then USED_FILES+=("$(cd "$DATA_ROOT" && pwd)/$2"); fi
}

# launch FLAGS... [-- LATE_FLAGS...]: one run_main.py (or, with ESTIMATE=1, estimate_training_time.py) run
# through accelerate launch, with FLAGS, then the SMOKE flags, then LATE_FLAGS (what SMOKE must not override),
# then the script's own arguments.
launch() {
  local entry=run_main.py args=() late=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  if [ "$#" -gt 0 ]; then shift; late=("$@"); fi
  if [ "$ESTIMATE" = 1 ]; then entry=estimate_training_time.py; fi
  local launcher=("$PYTHON" -m accelerate.commands.launch --num_processes "$NUM_PROCESSES"
                  --main_process_port "$(free_port)")
  if [ "$SMOKE" = 1 ]; then
    launcher=("$PYTHON" -m accelerate.commands.launch --cpu --num_processes 1 --num_machines 1 --num_cpu_threads_per_process 2
              --mixed_precision no --dynamo_backend no)
    args+=("${SMOKE_ARGS[@]}")
  fi
  args+=("${late[@]}" "${PASS_THROUGH[@]}")
  echo "+ ${launcher[*]} $entry ${args[*]}"
  "${launcher[@]}" "$entry" "${args[@]}"
}
