#!/usr/bin/env bash
# ETTh1 on several nodes with ZeRO-2. Run the same command on every node, each with its own MACHINE_RANK:
#   MAIN_IP=10.0.0.1 NUM_MACHINES=2 GPUS_PER_NODE=8 MACHINE_RANK=0 bash scripts/multi_node_ETTh1.sh   # main node
#   MAIN_IP=10.0.0.1 NUM_MACHINES=2 GPUS_PER_NODE=8 MACHINE_RANK=1 bash scripts/multi_node_ETTh1.sh   # the other
# Extra arguments go to run_main.py.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MAIN_IP:?set MAIN_IP to the main node address}" "${MACHINE_RANK:?set MACHINE_RANK (0 on the main node)}"
NUM_MACHINES="${NUM_MACHINES:-2}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PORT="${PORT:-29500}"
.venv/bin/accelerate launch --use_deepspeed --deepspeed_config_file ds_config_zero2.json \
  --deepspeed_multinode_launcher standard --mixed_precision bf16 \
  --num_machines "$NUM_MACHINES" --num_processes $((NUM_MACHINES * GPUS_PER_NODE)) \
  --machine_rank "$MACHINE_RANK" --main_process_ip "$MAIN_IP" --main_process_port "$PORT" \
  run_main.py --data ETTh1 --root_path ./dataset/ETT-small --features M --seq_len 512 --pred_len 96 \
  --d_model 32 --d_ff 128 --llm_model GPT2 --llm_layers 6 --batch_size 24 --learning_rate 0.01 \
  --train_epochs 10 --max_train_steps 0 --save_every_steps 500 --resume auto "$@"
