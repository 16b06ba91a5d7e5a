"""The memory plan against measured peaks: for each configuration, `estimate_training_time.py --plan` predicts one
process's peak, then `estimate_training_time.py` runs the configuration for real (the trainer's own loop, a
validation pass, the checkpoint saves) and reports its peak resident set; each in a fresh process, one after the
other, nothing else running.

    python -m benchmarks.memory_plan                       # the 8 configurations of docs/estimating.md
    python -m benchmarks.memory_plan --only gpt2,minilm --json out.json

Configurations: ETTh1 (the target alone, 512 -> 96, d_model 32, d_ff 128, bf16, evaluation batch 8) with GPT-2's shape
(random weights, 6 layers, batch 8), the pretrained MiniLM (6 layers, batch 16), a LLaMA-shaped 1.4 B model (24 layers,
2048 wide, batch 4) and the LLaMA-7B shape (32 layers, batch 2), each with and without --gradient_checkpointing. The
LLaMA folders are written once into --cache (models/synthetic_backbone.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.configs import ett_root
from timellm_launcher.models.synthetic_backbone import cached_llama_folder

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--data", "ETTh1", "--features", "S", "--seq_len", "512", "--pred_len", "96", "--d_model", "32",
          "--d_ff", "128", "--n_heads", "8", "--mixed_precision", "bf16", "--eval_batch_size", "8"]
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 32,
            "num_key_value_heads": 32}
MODELS = {
    "gpt2": (["--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "6", "--batch_size", "8"], None),
    "minilm": (["--llm_model", "MiniLM", "--llm_layers", "6", "--batch_size", "16"], None),
    "llama-1.4b": (["--llm_model", "LLAMA", "--llm_layers", "24", "--batch_size", "4"], ("llama-1.4b-shape", LLAMA_1B)),
    "llama-7b": (["--llm_model", "LLAMA", "--llm_layers", "32", "--batch_size", "2"], ("llama-7b-shape", {})),
}
MEASURE = ["--warmup_batches", "3", "--measure_batches", "3", "--measure_seconds", "0", "--eval_batches", "2"]


def estimator(flags: list[str], output: Path) -> dict:
    done = subprocess.run([sys.executable, "estimate_training_time.py", *flags, "--output", str(output)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"estimate_training_time.py {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    return json.loads(output.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated models of {', '.join(MODELS)}")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "time-llm-launcher"))
    parser.add_argument("--json", default="", help="also write the rows here")
    opts = parser.parse_args(argv)
    names = [n for n in opts.only.split(",") if n] or list(MODELS)
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; valid: {', '.join(MODELS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-plan-") as tmp:
        for name in names:
            flags, folder = MODELS[name]
            if folder is not None:
                flags = [*flags, "--llm_path", str(cached_llama_folder(opts.cache, folder[0], **folder[1]))]
            for checkpointing in (False, True):
                run = [*COMMON, "--root_path", str(ett_root()), *flags,
                       *(["--gradient_checkpointing"] if checkpointing else [])]
                plan = estimator([*run, "--plan"], Path(tmp) / "plan.json")
                measured = estimator([*run, *MEASURE], Path(tmp) / "estimate.json")
                predicted = plan["plans"][plan["run_plan"]]["peak_mb"]
                peak = measured["measured"]["peak_memory_mb"]["peak_rss_mb"]
                row = {"config": name, "checkpointing": checkpointing, "batch": plan["config"]["batch_size"],
                       "frozen_mb": plan["shapes"]["frozen_mb"], "predicted_mb": predicted, "measured_mb": peak,
                       "error": predicted / peak - 1, "device": measured["device"]["name"]}
                rows.append(row)
                print(f"{name:<11} {'ckpt' if checkpointing else 'plain':<6} batch {row['batch']:>2} | predicted "
                      f"{predicted / 1024:6.2f} GB | measured {peak / 1024:6.2f} GB | {100 * row['error']:+5.1f}%",
                      flush=True)
    worst = max(abs(r["error"]) for r in rows)
    print(f"{len(rows)} configurations on {rows[0]['device']}: the largest error is {100 * worst:.1f}%")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
