"""bf16 against fp32 for the whole training step of the embedded default, on this CPU: what `--mixed_precision auto`
decides, checked.

    python -m benchmarks.precision [--rounds 3] [--measure_seconds 15] [--json FILE] [-- extra run_main flags]

Each round runs estimate_training_time.py twice, in fresh processes, once per precision (the order alternates from
round to round, so the machine's slow and fast spells fall on both alike): the trainer's own loop, real optimizer
steps, evaluation batches. Prints each round's mean step and evaluation cost per sample, the bf16/fp32 ratios, the
CPU's model and bf16 flags, and what `auto` picks here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timellm_launcher.engine.runtime import device_name
from timellm_launcher.engine.train.accelerator import BF16_CPU_FLAGS, cpu_flags, native_bf16

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("no", "bf16")


def estimate(flags: list[str], output: Path) -> dict:
    done = subprocess.run([sys.executable, "estimate_training_time.py", *flags, "--output", str(output)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"estimate_training_time.py {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    return json.loads(output.read_text())["measured"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure_seconds", type=float, default=15.0)
    parser.add_argument("--json", default="")
    opts = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    import torch

    cpu = device_name(torch.device("cpu"))
    flags = sorted(f for f in cpu_flags() if f in BF16_CPU_FLAGS or f.startswith(("amx", "avx512")))
    print(f"{cpu} ({torch.get_num_threads()} threads), flags: {' '.join(flags) or 'none of note'}; "
          f"auto picks {'bf16 (' + native_bf16() + ')' if native_bf16() else 'fp32'}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        for round_ in range(opts.rounds):
            order = PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]
            found = {}
            for precision in order:
                measured = estimate(["--mixed_precision", precision, "--measure_seconds", str(opts.measure_seconds),
                                     *extra], Path(tmp) / f"{precision}.json")
                found[precision] = {"step_s": measured["step_s"]["mean"],
                                    "eval_sample_ms": 1000 * measured["eval"]["steady_sample_s"]}
            row = {"round": round_ + 1, **found, "step_ratio": found["no"]["step_s"] / found["bf16"]["step_s"],
                   "eval_ratio": found["no"]["eval_sample_ms"] / found["bf16"]["eval_sample_ms"]}
            rows.append(row)
            print(f"round {round_ + 1}: step fp32 {found['no']['step_s']:.3f} s, bf16 {found['bf16']['step_s']:.3f} s "
                  f"({row['step_ratio']:.2f}x) | evaluation fp32 {found['no']['eval_sample_ms']:.2f} ms/sample, bf16 "
                  f"{found['bf16']['eval_sample_ms']:.2f} ({row['eval_ratio']:.2f}x)", flush=True)
    step = statistics.mean(r["no"]["step_s"] for r in rows) / statistics.mean(r["bf16"]["step_s"] for r in rows)
    ev = statistics.mean(r["no"]["eval_sample_ms"] for r in rows) / statistics.mean(r["bf16"]["eval_sample_ms"]
                                                                                    for r in rows)
    print(f"bf16 is {step:.2f}x fp32's training-step speed and {ev:.2f}x its evaluation speed on {cpu} "
          f"({opts.rounds} interleaved rounds)")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"cpu": cpu, "flags": flags, "auto": native_bf16(), "rounds": rows,
                                               "step_speedup": step, "eval_speedup": ev}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
