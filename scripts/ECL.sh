#!/usr/bin/env bash
# ECL / Electricity (321 clients, --data custom), horizons 96/192/336/720, with Time-LLM's published settings
# (KimMeen/Time-LLM scripts/TimeLLM_ECL.sh): LLaMA-7B with 32 layers, seq_len 512, d_model 16, d_ff 32
# (the reference run_main defaults its script relies on), batch 24, lr 0.01 type1, 10 epochs, --features M.
# Environment: see common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/electricity electricity.csv electricity
for pred_len in $(horizons 96 192 336 720); do
  launch --recipe reference --data custom --root_path "$DATA_ROOT" --data_path electricity.csv --model_id "ECL_512_${pred_len}" \
    --features M --seq_len 512 --label_len 48 --pred_len "$pred_len" --d_model 16 --d_ff 32 \
    --llm_model LLAMA --llm_layers 32 --batch_size 24 --learning_rate 0.01 --lradj type1 --train_epochs 10 \
    --max_train_steps 0
done
