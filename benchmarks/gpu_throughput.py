"""Training throughput, memory and MFU of the real configurations on a GPU, with the GPU's own bf16 matmul rate
measured in the same run.

    python -m benchmarks.gpu_throughput [--out DIR] [--cache DIR] [--skip_7b]

Each configuration runs estimate_training_time.py in a fresh process (the trainer's own step: real optimizer steps,
evaluation batches) and reports step time, samples/s, LLM tokens/s, TFLOP/s executed (counted from the operators
that run), MFU against the data-sheet peak of the estimator's table and against the matmul rate measured here, and
the peak GPU memory allocated:

  etth1-gpt2-6l, batch 32 and 256     ETTh1 M, 512 -> 96, GPT-2-shaped 6-layer backbone (random weights), bf16
  llama-7b, batch 24                  the paper's configuration: ETTh1 M, 512 -> 96, a LLaMA-7B-shaped 32-layer
                                      backbone (random bf16 weights, models/synthetic_backbone.py), bf16, with the
                                      memory plan (--plan, probes measured on this GPU) beside the measured peak

Random weights cost what pretrained ones do. Results go to --out/gpu_throughput.json and each estimate's JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.configs import CONFIGS, ett_root

ROOT = Path(__file__).resolve().parents[1]
LLAMA_FLAGS = ["--data", "ETTh1", "--features", "M", "--seq_len", "512", "--pred_len", "96", "--llm_model", "LLAMA",
               "--llm_layers", "32", "--d_model", "32", "--d_ff", "128", "--n_heads", "8", "--num_tokens", "1000",
               "--patch_len", "16", "--stride", "8", "--mixed_precision", "bf16", "--batch_size", "24",
               "--max_train_steps", "0"]
TIMING = ["--warmup_batches", "3", "--measure_batches", "5", "--measure_seconds", "5", "--eval_batches", "2"]


def matmul_tflops(size: int = 8192, repeats: int = 10) -> float:
    """bf16 matrix product rate of this GPU (the mean of `repeats` after warm-ups)."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e12


def estimate(name: str, flags: list[str], out: Path, timeout: int) -> dict:
    """One estimator process; its JSON, or the failure's last lines."""
    file = out / f"{name}.json"
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "estimate_training_time.py", *flags, "--output", str(file)],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "status": f"timed out after {timeout} s"}
    print(done.stdout[-2500:], flush=True)
    if done.returncode != 0 or not file.is_file():
        return {"name": name, "status": "failed", "stderr": done.stderr[-2000:]}
    return {"name": name, "status": "ok", "wall_s": time.perf_counter() - start, **json.loads(file.read_text())}


def row(result: dict, rate: float) -> dict:
    """The figures of one estimate that the README table shows."""
    if result.get("status") != "ok":
        return result
    if "plans" in result:  # a memory plan
        return {"name": result["name"], "planned_peak_mb": result["plans"][result["run_plan"]]["peak_mb"],
                "verdict": result["verdict"]}
    m = result["measured"]
    achieved = m["tflops_per_s"]
    return {"name": result["name"], "batch": result["config"]["batch_size"], "step_s": m["step_s"]["mean"],
            "samples_per_s": m["samples_per_s"], "tokens_per_s": m["tokens_per_s"], "tflops_per_s": achieved,
            "mfu_datasheet": m["mfu"], "share_of_measured_matmul": achieved / rate if achieved else None,
            "gpu_max_allocated_mb": m["peak_memory_mb"].get("gpu_max_allocated_mb"),
            "data_wait_share": m["data_wait_s"] / m["step_s"]["mean"], "setup_s": m["setup_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_results"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/timellm-gpu-cache"))
    parser.add_argument("--skip_7b", action="store_true")
    opts = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu_throughput needs a CUDA GPU")
    opts.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0)
    rate = matmul_tflops()
    print(f"{device}: bf16 matmul {rate:.0f} TFLOP/s measured (8192^3)", flush=True)
    data = ["--root_path", str(ett_root())]
    results = []
    for batch in (32, 256):
        results.append(estimate(f"etth1-gpt2-6l_b{batch}", [*CONFIGS["etth1-gpt2-6l"], *data, *TIMING, "--batch_size",
                                                            str(batch), "--eval_batch_size", "256"], opts.out, 240))
    if not opts.skip_7b:
        from timellm_launcher.models.synthetic_backbone import cached_llama_folder

        start = time.perf_counter()
        folder = cached_llama_folder(opts.cache, "llama-7b-shape")
        print(f"LLaMA-7B-shaped folder ready in {time.perf_counter() - start:.0f} s: {folder}", flush=True)
        flags = [*LLAMA_FLAGS, *data, "--llm_path", str(folder), "--eval_batch_size", "64"]
        results.append(estimate("llama7b_plan", [*flags, "--plan", "--plan_device", "cuda"], opts.out, 240))
        results.append(estimate("llama7b_b24", [*flags, *TIMING], opts.out, 300))
    summary = {"device": device, "torch": torch.__version__, "bf16_matmul_tflops": rate,
               "rows": [row(r, rate) for r in results]}
    (opts.out / "gpu_throughput.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["rows"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
