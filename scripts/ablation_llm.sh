#!/usr/bin/env bash
# What does the LLM buy? The ablation of Tan et al. (NeurIPS 2024, "Are Language Models Actually Useful for
# Time Series Forecasting?") on one dataset: Time-LLM with the pretrained backbone, with the same architecture
# randomly initialised (--llm_init random), and without the LLM (--llm_model none: the reprogrammed patches go
# straight to the head). Prints MSE, MAE, training time and trainable parameters side by side.
#   bash scripts/ablation_llm.sh                                    # ETTh1 from ./dataset/ETT-small
#   DATA=custom DATA_PATH=exchange_rate.csv ROOT_PATH=/data bash scripts/ablation_llm.sh
#   LLM=GPT2 LLM_LAYERS=6 bash scripts/ablation_llm.sh --llm_path /models/gpt2   # --llm_path: see README
# The defaults are sized for a CPU (MiniLM, the backbone that ships offline; univariate; 2 epochs of at most
# 50 steps); pass run_main.py flags to change them. Results go to ABLATION_OUT (default ./results/ablation,
# cleared first; set it rather than --output_dir, which the table would not find). Environment: see common.sh.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
DATA="${DATA:-ETTh1}"
DATA_PATH="${DATA_PATH:-$DATA.csv}"
LLM="${LLM:-MiniLM}"
LLM_LAYERS="${LLM_LAYERS:-6}"
if [ "$SMOKE" = 1 ]; then LLM_LAYERS="${LLM_LAYERS_SMOKE:-1}"; fi
PRED_LEN="${PRED_LEN:-96}"
OUT="${ABLATION_OUT:-./results/ablation}"
use_dataset ./dataset/ETT-small "$DATA_PATH" "${DATA_PATH%.csv}"
rm -rf "$OUT"
common=(--data "$DATA" --root_path "$DATA_ROOT" --data_path "$DATA_PATH" --features S --seq_len 96
        --pred_len "$PRED_LEN" --d_model 16 --d_ff 32 --batch_size 32 --learning_rate 0.001 --lradj type1
        --train_epochs 2 --max_train_steps 50 --patience 3)
for variant in pretrained random none; do
  case "$variant" in
    pretrained) backbone=(--llm_model "$LLM" --llm_layers "$LLM_LAYERS" --llm_init pretrained) ;;
    random) backbone=(--llm_model "$LLM" --llm_layers "$LLM_LAYERS" --llm_init random) ;;
    none) backbone=(--llm_model none --llm_init pretrained) ;;
  esac
  launch "${common[@]}" -- "${backbone[@]}" --llm_dim 0 --output_dir "$OUT" --checkpoints ./checkpoints/ablation
done
"$PYTHON" -m timellm_launcher.engine.report.summarize "$OUT" --timing
