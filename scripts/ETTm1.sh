#!/usr/bin/env bash
# ETTm1, horizons 96/192/336/720, with Time-LLM's published settings (KimMeen/Time-LLM scripts/TimeLLM_ETTm1.sh):
# LLaMA-7B with 32 layers, seq_len 512, d_model 32, d_ff 128, batch 24, 100 epochs, --features M,
# lr 0.001 with TST for every horizon; patience 20 for 192/336/720. Environment: see common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/ETT-small ETTm1.csv ETTm1
for pred_len in $(horizons 96 192 336 720); do
  patience=20
  if [ "$pred_len" = 96 ]; then patience=3; fi
  launch --recipe reference --data ETTm1 --root_path "$DATA_ROOT" --data_path ETTm1.csv --model_id "ETTm1_512_${pred_len}" \
    --features M --seq_len 512 --label_len 48 --pred_len "$pred_len" --d_model 32 --d_ff 128 \
    --llm_model LLAMA --llm_layers 32 --batch_size 24 --train_epochs 100 --max_train_steps 0 \
    --learning_rate 0.001 --lradj TST --patience "$patience"
done
