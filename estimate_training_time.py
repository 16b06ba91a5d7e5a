"""How long will a run take, and which configuration is fastest? Times real training steps and evaluation
batches and projects epoch and run time (README: "Estimating run time").

    python estimate_training_time.py <run_main.py flags> [--warmup_batches 5] [--measure_batches 10]
        [--eval_batches 3] [--output estimate.json] [--compare "base=; amp=--use_amp"]

Takes every run_main.py flag (same parser, Config and builders, so it times exactly what training runs, under
`accelerate launch` and DeepSpeed too). Writes no checkpoint and no results file.
"""

import sys

from timellm_launcher.commands import estimate as main

if __name__ == "__main__":
    sys.exit(main())
