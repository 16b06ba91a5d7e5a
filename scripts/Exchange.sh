#!/usr/bin/env bash
# Exchange rate (8 currencies, --data custom), horizons 96/192/336/720. Time-LLM publishes no Exchange script;
# these are its long-term protocol (seq_len 512) with the ETTh1 script's model and optimiser settings
# (LLaMA-7B with 32 layers, d_model 32, d_ff 128, batch 24, lr 0.01 type1) and 10 epochs. Environment: see
# common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/exchange_rate exchange_rate.csv exchange_rate
for pred_len in $(horizons 96 192 336 720); do
  launch --recipe reference --data custom --root_path "$DATA_ROOT" --data_path exchange_rate.csv \
    --model_id "exchange_512_${pred_len}" --features M --seq_len 512 --label_len 48 --pred_len "$pred_len" \
    --d_model 32 --d_ff 128 --llm_model LLAMA --llm_layers 32 --batch_size 24 --learning_rate 0.01 \
    --lradj type1 --train_epochs 10 --max_train_steps 0
done
