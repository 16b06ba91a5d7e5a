#!/usr/bin/env bash
# ETTh1, the four horizons, Time-LLM's published shape (seq 512, d_model 32, d_ff 128, batch 24, lr 0.01)
# on a GPT-2 backbone (6 layers). NUM_PROCESSES=N for N GPUs; extra arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_PROCESSES="${NUM_PROCESSES:-1}"
for pred_len in 96 192 336 720; do
  .venv/bin/accelerate launch --num_processes "$NUM_PROCESSES" --main_process_port 0 run_main.py \
    --data ETTh1 --root_path ./dataset/ETT-small --data_path ETTh1.csv --model_id "ETTh1_512_${pred_len}" \
    --features M --seq_len 512 --label_len 48 --pred_len "$pred_len" --d_model 32 --d_ff 128 \
    --llm_model GPT2 --llm_layers 6 --batch_size 24 --learning_rate 0.01 --train_epochs 10 \
    --max_train_steps 0 --patience 3 --lradj type1 "$@"
done
