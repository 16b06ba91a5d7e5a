#!/usr/bin/env bash
# ETTm2, horizons 96/192/336/720, with Time-LLM's published settings (KimMeen/Time-LLM scripts/TimeLLM_ETTm2.sh):
# LLaMA-7B with 32 layers, seq_len 512, d_model 32, d_ff 128, 10 epochs, --features M;
# 96: batch 16, lr 0.01 type1; 192/336/720: batch 24, lr 0.002 TST. Environment: see common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/ETT-small ETTm2.csv ETTm2
for pred_len in $(horizons 96 192 336 720); do
  case "$pred_len" in
    96) extra=(--batch_size 16 --learning_rate 0.01 --lradj type1) ;;
    *) extra=(--batch_size 24 --learning_rate 0.002 --lradj TST) ;;
  esac
  launch --recipe reference --data ETTm2 --root_path "$DATA_ROOT" --data_path ETTm2.csv --model_id "ETTm2_512_${pred_len}" \
    --features M --seq_len 512 --label_len 48 --pred_len "$pred_len" --d_model 32 --d_ff 128 \
    --llm_model LLAMA --llm_layers 32 --train_epochs 10 --max_train_steps 0 "${extra[@]}"
done
