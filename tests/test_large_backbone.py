"""Large backbones: a LLaMA-shaped folder loads in the run's dtype without a float32 copy, the layers beyond
--llm_layers are never read, and the memory plan's prediction holds against a measured peak."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY
from timellm_launcher.engine.estimate.memory_plan import Fit, Linear, Shapes, Target, compose, decide, parse_size_mb
from timellm_launcher.models.backbone import load_backbone
from timellm_launcher.models.synthetic_backbone import write_llama_folder

SHAPE = {"hidden_size": 1536, "intermediate_size": 4096, "num_hidden_layers": 8, "num_attention_heads": 24,
         "num_key_value_heads": 24}
KEPT = 4


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    """A 640 MB LLaMA-shaped bf16 checkpoint (8 layers, 1536 wide), about one layer per shard."""
    return write_llama_folder(tmp_path_factory.mktemp("llama") / "llama-8x1536", shard_bytes=60 * 2**20, **SHAPE)


def _python(code: str) -> dict:
    """Run `code` in a fresh interpreter (its own peak resident set) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bf16_folder_loads_within_its_kept_bytes(llama_folder):
    """Loading the first 4 of 8 layers in bf16 and touching every weight (as the first forward does) costs at most
    1.15 x those weights' bytes above the process's baseline; a float32 detour would cost 3x."""
    reading = _python(f"""
import json, torch
from timellm_launcher.engine.report.memory import MemoryMeter
from timellm_launcher.models.backbone import load_tokenizer, load_backbone
meter = MemoryMeter(torch.device("cpu"))
load_tokenizer("LLAMA", llm_path={str(llama_folder)!r}, llm_init="pretrained")
base = meter.now_mb()
backbone = load_backbone("LLAMA", llm_path={str(llama_folder)!r}, llm_layers={KEPT}, dtype=torch.bfloat16)
kept = sum(p.numel() * p.element_size() for p in backbone.model.parameters()) / 2**20
touched = sum(float(p.detach().view(-1)[::2048].float().sum()) for p in backbone.model.parameters())
print(json.dumps({{"base": base, "peak": meter.peak_mb(), "kept": kept,
                   "dtypes": sorted({{str(p.dtype) for p in backbone.model.parameters()}})}}))
""")
    assert reading["dtypes"] == ["torch.bfloat16"]
    assert reading["kept"] > 300  # 4 layers + embeddings of the 8-layer folder
    assert reading["peak"] - reading["base"] <= 1.15 * reading["kept"], reading


def _resident_fraction(path: Path, ranges: list[tuple[int, int]]) -> float:
    """Share of the pages of `ranges` (byte offsets in `path`) held in the page cache (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size, page = path.stat().st_size, mmap.PAGESIZE
    with open(path, "rb") as handle:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, handle.fileno(), 0)
        pages = ctypes.create_string_buffer((size + page - 1) // page)
        assert libc.mincore(address, size, pages) == 0
        libc.munmap(address, size)
    wanted = [i for start, end in ranges for i in range(start // page, (end + page - 1) // page)]
    return sum(pages.raw[i] & 1 for i in wanted) / max(len(wanted), 1)


def _tensor_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """Byte ranges of each tensor in a safetensors file (from its header)."""
    with open(path, "rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(length))
    start = 8 + length
    return {k: (start + v["data_offsets"][0], start + v["data_offsets"][1]) for k, v in header.items()
            if k != "__metadata__"}


def _evict(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _readahead_bytes(path: Path) -> int:
    """The kernel's read-ahead window for the disk holding `path`: a read of a shard's header may bring in this
    much more of the file (8 MiB on this project's virtual disks)."""
    dev = path.stat().st_dev
    block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for queue in (block / "queue", block.parent / "queue"):
        if (queue / "read_ahead_kb").is_file():
            return int((queue / "read_ahead_kb").read_text()) * 1024
    return 8 * 2**20


def _layer(key: str) -> int | None:
    parts = key.split(".")
    return int(parts[2]) if parts[1] == "layers" else None


def test_layers_beyond_llm_layers_are_never_read(llama_folder):
    """After a forward through the first 4 layers, the page cache holds the kept layers' bytes; of the shards that
    hold only dropped layers (or the causal-LM head Time-LLM does not use) it holds at most what the kernel reads
    ahead of their headers: the rest was never read from disk."""
    shards = sorted(llama_folder.glob("*.safetensors"))
    for shard in shards:
        _evict(shard)
    backbone = load_backbone("LLAMA", llm_path=str(llama_folder), llm_layers=KEPT, dtype=torch.bfloat16)
    with torch.no_grad():
        backbone.model(inputs_embeds=torch.randn(1, 4, SHAPE["hidden_size"], dtype=torch.bfloat16))
    kept, untouched = [], []
    for shard in shards:
        ranges = _tensor_ranges(shard)
        unused = {k for k in ranges if k.startswith("lm_head") or (_layer(k) is not None and _layer(k) >= KEPT)}
        if unused == set(ranges):
            untouched.append(shard)
        kept += [(shard, span) for k, span in ranges.items() if _layer(k) is not None and k not in unused]
    assert len(untouched) >= 3  # the layout puts layers 5-7 and the head in shards of their own
    assert min(_resident_fraction(shard, [span]) for shard, span in kept) > 0.95  # the probe sees what was read
    for shard in untouched:
        size = shard.stat().st_size
        assert size > 2 * _readahead_bytes(shard)  # the test can tell a read file from a read-ahead header
        assert _resident_fraction(shard, [(0, size)]) * size <= _readahead_bytes(shard) + 2**20
    del backbone


def test_bf16_folder_gives_the_forward_of_the_float32_load_cast(llama_folder):
    direct = load_backbone("LLAMA", llm_path=str(llama_folder), llm_layers=2, dtype=torch.bfloat16).model
    cast = load_backbone("LLAMA", llm_path=str(llama_folder), llm_layers=2, dtype=torch.float32).model
    cast.to(torch.bfloat16)
    embeds = torch.randn(2, 7, SHAPE["hidden_size"], generator=torch.Generator().manual_seed(0)).bfloat16()
    with torch.no_grad():
        assert torch.equal(direct(inputs_embeds=embeds).last_hidden_state,
                           cast(inputs_embeds=embeds).last_hidden_state)


def test_random_backbone_is_initialised_in_its_dtype_with_the_float32_values():
    """A random backbone is built straight in bf16, with the values float32 initialisation then a cast gives (so a
    run's seed rebuilds it, e.g. for forecasting, whatever the precision path)."""
    torch.manual_seed(3)
    direct = load_backbone("LLAMA", llm_init="random", llm_layers=2, llm_dim=64, dtype=torch.bfloat16).model
    torch.manual_seed(3)
    cast = load_backbone("LLAMA", llm_init="random", llm_layers=2, llm_dim=64, dtype=torch.float32).model
    cast.to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in direct.parameters())
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(), cast.state_dict().values(),
                                                 strict=True))


def test_meta_backbone_counts_what_loading_holds(llama_folder):
    meta = load_backbone("LLAMA", llm_path=str(llama_folder), llm_layers=KEPT, dtype=torch.bfloat16, device="meta")
    real = load_backbone("LLAMA", llm_path=str(llama_folder), llm_layers=KEPT, dtype=torch.bfloat16)
    assert all(p.is_meta for p in meta.model.parameters())
    assert [(n, p.shape, p.dtype) for n, p in meta.model.named_parameters()] == \
        [(n, p.shape, p.dtype) for n, p in real.model.named_parameters()]


# ------------------------------------------------------------------------------------------------- the plan
def test_plan_predicts_the_measured_peak_of_the_tiny_run(tmp_path, ett_root):
    """`--plan` of the tiny model with 4 layers (probed with 1 and 2) against the peak resident set of the real run
    (train, validate, save, test), within 15%."""
    flags = [*TINY, "--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", "--llm_layers", "4"]
    plan_file = tmp_path / "plan.json"
    planned = subprocess.run([sys.executable, "estimate_training_time.py", *flags, "--plan", "--output",
                              str(plan_file)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "verdict   fits" in planned.stdout
    plan = json.loads(plan_file.read_text())
    trained = subprocess.run([sys.executable, "run_main.py", *flags, "--max_train_steps", "20", "--train_epochs", "1",
                              "--checkpoints", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "out")],
                             capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert trained.returncode == 0, trained.stderr[-2000:]
    measured = json.loads(next((tmp_path / "out").rglob("results.json")).read_text())["memory"]["peak_rss_mb"]
    predicted = plan["plans"][plan["run_plan"]]["peak_mb"]
    assert abs(predicted / measured - 1) <= 0.15, (predicted, measured)


def _shapes(**changes) -> Shapes:
    base = {"layers": 32, "width": 4096, "precision": "bf16", "frozen_mb": 12_800.0, "layer_mb": 386.0,
            "trainable": 40_000_000, "tokens": 190, "prompt_tokens": 126, "step_flop_per_row": 1e11,
            "uses_llm": True, "prefix_row_mb": 60.0}
    return Shapes(**{**base, **changes})


def _fit() -> Fit:
    return Fit(static_mb=1500.0, static_layers=1, train=Linear(1000.0, 20.0, 25.0),
               train_checkpointed=Linear(1000.0, 20.0, 2.0), save_mb=0.0, evaluation=Linear(10.0, 5.0, 0.0))


def _cfg(**changes):
    from timellm_launcher.engine.config import Config

    return Config(**{"batch_size": 24, "eval_batch_size": 8, **changes}).validate()


def test_plan_arithmetic_and_verdict():
    """A 7B-like plan on 24 GB: weights fit, 24 rows do not; the largest micro-batch keeps the global batch with
    --grad_accum; checkpointing lets more rows fit; 8 GB cannot even hold the frozen weights."""
    target = Target("cpu", parse_size_mb("24GB"), "--device_memory", 1, None, False)
    cfg = _cfg()
    plans = {"plain": compose(_shapes(), _fit(), target, cfg, checkpointing=False, probed_on_gpu=False),
             "checkpointed": compose(_shapes(), _fit(), target, cfg, checkpointing=True, probed_on_gpu=False)}
    plain = plans["plain"]
    assert plain.per_row_mb == pytest.approx(20 + 32 * 25)
    assert plain.components["frozen"] == 12_800
    assert plain.components["prefix_cache"] == pytest.approx(24 * 60)
    assert plain.train_mb == pytest.approx(sum(plain.components.values()))
    verdict = decide(cfg, plans, target, train_samples=8000)
    assert not verdict["fits"]
    batch = verdict["batch"]
    assert 1 <= batch["largest_micro_batch"] < 24
    assert batch["batch_size"] * batch["grad_accum"] >= 24 and batch["batch_size"] <= batch["largest_micro_batch"]
    assert verdict["with_checkpointing"]["largest_micro_batch"] > batch["largest_micro_batch"]
    small = Target("cpu", parse_size_mb("8GB"), "--device_memory", 1, None, False)
    tight = {k: compose(_shapes(), _fit(), small, cfg, checkpointing=k == "checkpointed", probed_on_gpu=False)
             for k in plans}
    assert decide(cfg, tight, small, 8000)["frozen_exceeds"]


def test_zero2_partitions_the_trainable_state_and_offload_moves_it_to_the_host():
    cfg = _cfg()
    one = Target("cuda", parse_size_mb("80GB"), "--device_memory", 1, None, False)
    zero = Target("cuda", parse_size_mb("80GB"), "--device_memory", 8, 2, False, 200_000_000, 2)
    offload = Target("cuda", parse_size_mb("80GB"), "--device_memory", 8, 2, True, 200_000_000, 2)
    plain, sharded, moved = (compose(_shapes(), _fit(), t, cfg, checkpointing=False, probed_on_gpu=False)
                             for t in (one, zero, offload))
    n = 40_000_000 / 2**20
    assert plain.components["adam"] == pytest.approx(8 * n)
    assert sharded.components["adam"] == pytest.approx((8 + 4) * n / 8)  # moments + fp32 master, an eighth each
    assert sharded.components["params"] == pytest.approx(2 * n)  # the module in bf16
    assert sharded.components["buckets"] == pytest.approx(2 * 200_000_000 * 2 / 2**20)
    assert moved.components["adam"] == 0 and moved.host_mb == pytest.approx((4 + 4 + 8) * n / 8)


@pytest.mark.parametrize("text, mb", [("24GB", 24 * 1024), ("80 GiB", 80 * 1024), ("16000MB", 16000),
                                      ("1.5T", 1.5 * 1024**2), ("12", 12 * 1024)])
def test_device_memory_sizes(text, mb):
    assert parse_size_mb(text) == pytest.approx(mb)


@pytest.mark.parametrize("text", ["", "lots", "-4GB", "0GB", "12PB"])
def test_device_memory_refuses_what_is_not_a_size(text):
    from timellm_launcher.core.errors import UserError

    with pytest.raises(UserError, match="--device_memory"):
        parse_size_mb(text)


def test_plan_refuses_a_bad_device_memory_in_one_line(ett_root):
    done = subprocess.run([sys.executable, "estimate_training_time.py", *TINY, "--data", "ETTh1", "--root_path",
                           str(ett_root),
                           "--plan", "--device_memory", "lots"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --device_memory 'lots': give a size such as 24GB, 80GiB or "
                                                "16000MB"]
    assert "Traceback" not in done.stderr
