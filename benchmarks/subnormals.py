"""Does flushing subnormal floats to zero keep CPU training steps fast as training goes on?

    python -m benchmarks.subnormals                              # etth1-gpt2-6l, 24 steps per side
    python -m benchmarks.subnormals --config tiny --steps 200

The setting is per thread and copied by torch's worker threads when they start, so it cannot be switched step by
step inside one process: each side runs in a fresh process (flush on, flush off, then on again, so drift of the
machine between them shows), trains `--steps` optimizer steps of the project's step from the same seed, and
prints the median of its first and last quarter of steps. Without flushing, the steps slow down as the attention
softmaxes sharpen and underflow into subnormals; the last line reads
`subnormals: last-quarter step off/on X.XXx (on A ms, off B ms), device D, config C`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys


def child(config: str, steps: int, flush: bool) -> None:
    from timellm_launcher.engine.cli import prepare_process

    prepare_process(flush_denormals=flush)
    import torch

    from benchmarks.configs import flags_for
    from benchmarks.measure import Bench

    bench = Bench(config, flags_for(config, "cuda" if torch.cuda.is_available() else "cpu"))
    seconds = [bench._timed(bench.optimised_step) for _ in range(steps)]
    print(json.dumps({"seconds": seconds, "device": bench.header()["device"]}))


def side(config: str, steps: int, flush: bool) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.subnormals", "--config", config, "--steps", str(steps),
                          "--child", "on" if flush else "off"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    quarter = max(1, steps // 4)
    result["first_ms"] = 1000 * statistics.median(result["seconds"][1:1 + quarter])  # the cold first step aside
    result["last_ms"] = 1000 * statistics.median(result["seconds"][-quarter:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="etth1-gpt2-6l")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.steps, args.child == "on")
        return
    runs = [("on", side(args.config, args.steps, True)), ("off", side(args.config, args.steps, False)),
            ("on", side(args.config, args.steps, True))]
    for name, r in runs:
        print(f"flush {name:3s} | first quarter median {r['first_ms']:7.1f} ms | last quarter {r['last_ms']:7.1f} ms "
              f"| x{r['last_ms'] / r['first_ms']:.2f} over {args.steps} steps")
    on = statistics.mean(r["last_ms"] for name, r in runs if name == "on")
    off = runs[1][1]["last_ms"]
    print(f"subnormals: last-quarter step off/on {off / on:.2f}x (on {on:.0f} ms, off {off:.0f} ms), "
          f"device {runs[0][1]['device']}, config {args.config}")


if __name__ == "__main__":
    main()
