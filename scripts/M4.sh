#!/usr/bin/env bash
# M4 short-term forecasting, the six seasonal patterns, with Time-LLM's published settings
# (KimMeen/Time-LLM scripts/TimeLLM_M4.sh): LLaMA-7B with 32 layers, d_model 8, d_ff 32, patch_len 1, stride 1,
# batch 24, lr 0.001, 50 epochs, SMAPE loss. seq_len = 2 x horizon and pred_len = the horizon are set by
# --seasonal_patterns. Files: ROOT_PATH (default ./dataset/m4) with M4-info.csv, training.npz, test.npz.
# After the six runs, `python -m timellm_launcher.engine.report.summarize results/` prints the SMAPE/MASE/OWA table. See common.sh.
# --recipe reference trains as the reference code effectively does (README: Reproducing published numbers).
# Differs on purpose: every test window is scored (the reference drops its last test batch); prompt numbers round to 0.01.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh" "$@"
use_dataset ./dataset/m4 M4-info.csv m4
for pattern in $(horizons Yearly Quarterly Monthly Weekly Daily Hourly); do
  launch --recipe reference --task_name short_term_forecast --data m4 --root_path "$DATA_ROOT" --seasonal_patterns "$pattern" \
    --model_id "m4_${pattern}" --features S --d_model 8 --d_ff 32 --patch_len 1 --stride 1 \
    --llm_model LLAMA --llm_layers 32 --batch_size 24 --learning_rate 0.001 --lradj type1 --loss SMAPE \
    --train_epochs 50 --max_train_steps 0
done
