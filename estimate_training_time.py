"""How long will a run take? Times real training steps and validation batches, projects epoch and run time.

Takes every run_main.py flag (same parser, Config and builders, so it times exactly what training
runs) plus --warmup_batches and --measure_batches. Writes no checkpoint and no results file.
"""

from __future__ import annotations

import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from engine.config import build_parser, config_from_args

    parser = build_parser("Estimate the training time of a run_main.py configuration.")
    extra = parser.add_argument_group("estimator")
    extra.add_argument("--warmup_batches", type=int, default=5, help="untimed steps first (compilation, caches)")
    extra.add_argument("--measure_batches", type=int, default=10, help="timed training steps")
    args = parser.parse_args(argv)

    def estimate() -> None:
        import torch
        from accelerate.utils import set_seed

        from engine.accelerator import build_accelerator
        from engine.builders import build_training
        from engine.errors import UserError
        from engine.trainer import forecast, loss_fn, train_step

        cfg = config_from_args(args)
        if args.warmup_batches < 0 or args.measure_batches < 1:
            raise UserError("--warmup_batches must be >= 0 and --measure_batches >= 1")
        set_seed(cfg.seed)
        accelerator = build_accelerator(cfg)
        setup = build_training(cfg, accelerator)
        model = setup.model
        # the schedule's values do not change a step's cost; a constant one cannot run past its end (TST would)
        setup.scheduler = torch.optim.lr_scheduler.LambdaLR(setup.optimizer, lambda _: 1.0)
        train_loader, val_loader, steps_per_epoch = setup.loaders["train"], setup.loaders["val"], setup.steps_per_epoch
        criterion = loss_fn(cfg.loss)
        model.train()
        times = []
        batches = iter(train_loader)
        for i in range(args.warmup_batches + args.measure_batches):
            batch = next(batches, None)
            if batch is None:
                batches = iter(train_loader)
                batch = next(batches)
            t0 = time.perf_counter()
            train_step(setup, batch, accelerator, cfg, criterion).item()  # .item() waits
            if i >= args.warmup_batches:
                times.append(time.perf_counter() - t0)
        model.eval()
        eval_times = []
        with torch.inference_mode():
            for i, batch in enumerate(val_loader):
                if i >= 3:
                    break
                t0 = time.perf_counter()
                forecast(model, batch).sum().item()
                eval_times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        train_epoch = step * steps_per_epoch * cfg.grad_accum  # a timed step is one micro-batch
        val_epoch = statistics.median(eval_times) * len(val_loader)
        epoch = train_epoch + val_epoch
        accelerator.print(
            f"step {step:.3f} s (median of {len(times)}, {args.warmup_batches} warm-up excluded) | "
            f"{steps_per_epoch} steps/epoch -> train {train_epoch:.1f} s + validation {val_epoch:.1f} s "
            f"= {epoch:.1f} s/epoch | {cfg.train_epochs} epoch(s) x {cfg.itr} itr: "
            f"{epoch * cfg.train_epochs * cfg.itr / 60:.1f} min (device {accelerator.device})")

    from engine.cli import run_cli

    return run_cli(estimate)


if __name__ == "__main__":
    sys.exit(main())
