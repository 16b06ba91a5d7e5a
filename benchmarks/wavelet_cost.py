"""What --use_swt and --use_dwt_prompt cost per training step, measured side by side in one process.

    python -m benchmarks.wavelet_cost [--config tiny|etth1-gpt2-6l|both] [--steps 6] [--root_path DIR]

Builds the plain model and the three wavelet variants with the same builders as training (same data,
same batches, same accelerator), then times real optimizer steps (engine/train/loop.py's train_step,
NaN guard included) round-robin, one step of each variant per round, so machine noise hits all of
them alike. Prints the median wall and CPU time (all threads of this process; steadier than wall
time on a shared machine) of each variant's step and their ratios to the plain one.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.configs import SHARED_DATA
from timellm_launcher.engine.recipes import TINY_MODEL

CONFIGS = {
    # GPT-2 shape (768 wide, 50257-token vocabulary), random weights, 6 layers; ETTh1 all 7 variables
    "etth1-gpt2-6l": ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--pred_len", "96",
                      "--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "6", "--d_model", "32",
                      "--d_ff", "128", "--batch_size", "8"],
    "tiny": ["--data", "ETTh1", "--features", "M", *TINY_MODEL, "--seq_len", "48", "--pred_len", "12",
             "--patch_len", "8", "--stride", "8", "--batch_size", "16"],
}
VARIANTS = {"plain": [], "swt": ["--use_swt"], "dwt_prompt": ["--use_dwt_prompt"],
            "swt+dwt_prompt": ["--use_swt", "--use_dwt_prompt"]}


def measure(name: str, root_path: str, steps: int, warmup: int) -> None:
    import torch

    from timellm_launcher.engine.cli import prepare_process
    from timellm_launcher.engine.config import build_parser, config_from_args
    from timellm_launcher.engine.train.accelerator import build_accelerator
    from timellm_launcher.engine.train.builders import build_training
    from timellm_launcher.engine.train.loop import train_step
    from timellm_launcher.engine.train.nan_guard import NonFiniteGuard

    prepare_process()
    parser = build_parser("benchmark")
    setups, accelerator = {}, None
    for variant, flags in VARIANTS.items():
        cfg = config_from_args(parser.parse_args([*CONFIGS[name], *flags, "--root_path", root_path,
                                                  "--max_train_steps", "0", "--lradj", "constant"]))
        accelerator = accelerator or build_accelerator(cfg)
        torch.manual_seed(0)
        setup = build_training(cfg, accelerator)
        setups[variant] = (cfg, setup, NonFiniteGuard(cfg, accelerator, setup.trainable))
    loader = iter(setups["plain"][1].loaders["train"])
    batches = [next(loader) for _ in range(warmup + steps)]
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i, batch in enumerate(batches):
        for variant, (_, setup, guard) in setups.items():
            setup.model.train()
            started, started_cpu = time.perf_counter(), time.process_time()
            train_step(setup, batch, guard).item()
            if i >= warmup:
                times[variant].append(time.perf_counter() - started)
                cpu[variant].append(time.process_time() - started_cpu)
    base, base_cpu = statistics.median(times["plain"]), statistics.median(cpu["plain"])
    rows = {v: setups[v][1].raw_model for v in VARIANTS}
    print(f"{name}: {accelerator.device}, {torch.get_num_threads()} threads, batch {setups['plain'][0].batch_size}, "
          f"{steps} timed steps per variant after {warmup} warm-up, median")
    for variant in VARIANTS:
        t, c = statistics.median(times[variant]), statistics.median(cpu[variant])
        model = rows[variant]
        print(f"  {variant:15s} wall {t * 1000:9.1f} ms/step x{t / base:5.2f} | cpu {c * 1000:9.1f} ms/step "
              f"x{c / base_cpu:5.2f} | LLM sees {model.prompt.length} prompt + {model.num_patches} patch tokens",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "both"], default="both")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--root_path", default=str(SHARED_DATA),
                        help="folder holding ETTh1.csv")
    args = parser.parse_args()
    for name in (["tiny", "etth1-gpt2-6l"] if args.config == "both" else [args.config]):
        measure(name, args.root_path, args.steps, args.warmup)


if __name__ == "__main__":
    main()
