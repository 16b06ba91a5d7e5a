"""One probe of the memory plan, in a fresh process: build exactly what training builds for a reduced configuration
(the plan gives it the run's flags with fewer backbone layers and random weights), run what an epoch runs (training
steps, the checkpoint saves, a validation and a test pass) on batches of the run's shape, and print the memory
after each as one JSON line.

    python -m timellm_launcher.engine.estimate.memory_probe '{"config": {...}, "rows": 4, "eval_rows": 12}'

A fresh process per probe, because an allocator that keeps freed memory (glibc under engine.runtime.keep_host_memory,
the CUDA caching allocator) would let one probe's peak hide inside the previous one's.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

TRAIN_STEPS = 4


def measure(config: dict, rows: int, eval_rows: int) -> dict[str, float]:
    """Memory (MB) in the order an epoch runs: after the model and optimizer are built (`static_mb`), at the peak of
    the training steps on `rows` samples (`train_peak_mb`, TRAIN_STEPS optimizer steps), once the resumable state and
    the best weights are saved (`save_peak_mb`), and after a validation and a test pass of two `eval_rows` batches
    each (`eval_peak_mb`; 0 rows: no evaluation). Every peak is the process's since it started."""
    import torch
    from accelerate.utils import set_seed

    from timellm_launcher.engine.config import Config
    from timellm_launcher.engine.evaluate.loop import evaluate
    from timellm_launcher.engine.model_io import save_weights
    from timellm_launcher.engine.report.memory import MemoryMeter
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training
    from timellm_launcher.engine.train.checkpoint import save_training_state
    from timellm_launcher.engine.train.loop import train_steps
    from timellm_launcher.engine.train.trainer import Trainer  # noqa: F401 (the libraries a training process holds: plots, trackers)

    cfg = Config(**config).validate()
    set_seed(cfg.seed)
    accelerator = build_accelerator(cfg)
    setup = build_training(cfg, accelerator)
    meter = MemoryMeter(accelerator.device)
    reading = {"static_mb": meter.now_mb()}

    def batch(n: int) -> dict[str, torch.Tensor]:
        out_vars = 1 if cfg.features == "MS" else setup.data.n_vars
        return {"x": torch.randn(n, cfg.seq_len, setup.data.n_vars, device=accelerator.device),
                "y": torch.randn(n, cfg.pred_len, out_vars, device=accelerator.device)}

    def peak() -> float:
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize(accelerator.device)
        return meter.peak_mb()

    # the same number of steps in every probe, so that their differences cancel the allocator's settling: the
    # optimizer state appears after the first step, the heap grows over the next few
    training = batch(rows)
    for _ in train_steps(setup, [training] * TRAIN_STEPS * cfg.grad_accum, None,
                         torch.zeros((), device=accelerator.device)):
        pass
    reading["train_peak_mb"] = peak()
    with tempfile.TemporaryDirectory(prefix="memory-probe-") as folder:
        save_training_state(accelerator, setup.model, setup.raw_model, setup.optimizer, {"progress": {}}, Path(folder))
        save_weights(setup.raw_model, Path(folder) / "best.safetensors")
    reading["save_peak_mb"] = peak()
    if eval_rows:
        evaluation = batch(eval_rows)
        for split in ("validation", "test"):
            evaluate(setup.model, [evaluation, evaluation], accelerator, split)
            setup.model.train()
    reading["eval_peak_mb"] = peak()
    return reading


def main(argv: list[str]) -> int:
    from timellm_launcher.engine.cli import prepare_process

    prepare_process()
    spec = json.loads(argv[0])
    print(json.dumps(measure(spec["config"], int(spec["rows"]), int(spec["eval_rows"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
