"""Training: the Accelerator and DeepSpeed set-up, builders, the loop, checkpoints and run folders."""
