#!/usr/bin/env bash
# ILI / national illness (7 weekly variables, 966 rows, --data custom), horizons 24/36/48/60. Time-LLM publishes
# no ILI script; the input length 104, patch length 24 and stride 2 are the ILI settings of PatchTST and
# GPT4TS (OFA), the rest the ETTh1 script's (LLaMA-7B with 32 layers, d_model 32, d_ff 128, lr 0.01 type1),
# with batch 16 and 10 epochs for this small file. Environment: see common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/illness national_illness.csv national_illness
for pred_len in $(horizons 24 36 48 60); do
  launch --recipe reference --data custom --root_path "$DATA_ROOT" --data_path national_illness.csv \
    --model_id "ili_104_${pred_len}" --features M --seq_len 104 --label_len 18 --pred_len "$pred_len" \
    --patch_len 24 --stride 2 --d_model 32 --d_ff 128 --llm_model LLAMA --llm_layers 32 --batch_size 16 \
    --learning_rate 0.01 --lradj type1 --train_epochs 10 --max_train_steps 0 --freq w
done
