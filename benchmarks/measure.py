"""The measuring half of the training-step benchmark: build both paths, time, memory, FLOPs, ablations."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from benchmarks.reference_path import REFERENCE_DROPOUT, ReferencePrompt, ReferenceTimeLLM, ReferenceTrainer
from timellm_launcher.engine.config import build_parser, config_from_args
from timellm_launcher.engine.estimate.estimator import StepClock
from timellm_launcher.engine.estimate.flops import peak_tflops as gpu_peak_tflops
from timellm_launcher.engine.model_io import prompt_description
from timellm_launcher.engine.runtime import device_name, keep_host_memory
from timellm_launcher.engine.train.accelerator import build_accelerator, compute_dtype
from timellm_launcher.engine.train.builders import build_training
from timellm_launcher.engine.train.loop import train_steps
from timellm_launcher.models.backbone import load_tokenizer


def device_label(device: torch.device) -> str:
    """The device's name, with the thread count on a CPU (the step time depends on it)."""
    name = device_name(device)
    return name if device.type == "cuda" else f"{name}, {torch.get_num_threads()} threads"


class RssPeak:
    """Peak resident-set growth over a block, sampled every 2 ms from /proc (CPU runs)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> RssPeak:
        self.base = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss() - self.base)


class Bench:
    """The project's training setup and a reference path built from the same weights, on one device."""

    def __init__(self, name: str, flags: list[str], peak_tflops: float = 0.0) -> None:
        self.name = name
        self.cfg = config_from_args(build_parser("benchmark").parse_args(flags))
        set_seed(self.cfg.seed)
        self.accelerator = build_accelerator(self.cfg)
        self.setup = build_training(self.cfg, self.accelerator)
        self.device = self.accelerator.device
        self.dtype = compute_dtype(self.accelerator)
        tokenizer = load_tokenizer(self.cfg.llm_model, llm_path=self.cfg.llm_path,
                                   allow_download=self.cfg.allow_download, llm_init=self.cfg.llm_init)
        self.reference = ReferenceTimeLLM(self.setup.raw_model, tokenizer,
                                          prompt_description(self.cfg, self.setup.data), seq_len=self.cfg.seq_len,
                                          pred_len=self.cfg.pred_len, dropout=self.cfg.dropout, dtype=self.dtype)
        self.reference_trainer = ReferenceTrainer(self.reference, self.cfg.learning_rate)
        self.batches = self._batches()
        self.batch: dict[str, torch.Tensor] = next(self.batches)
        self.clock = StepClock(self.device)
        self.peak_tflops = peak_tflops or gpu_peak_tflops(self.device, self.accelerator.mixed_precision) or 0.0

    # ------------------------------------------------------------------ steps
    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = 0
        while True:
            loader = self.setup.loaders["train"]
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timed(self, fn: Callable[[], Any]) -> float:
        self._sync()
        start = self.clock.mark()
        fn()
        end = self.clock.mark()
        self.clock.finish()
        return self.clock.elapsed(start, end)

    def optimised_step(self) -> None:
        """One optimizer step of the trainer's own loop (engine.train.loop.train_steps), fetching included."""
        self.setup.model.train()

        def drawn() -> Iterator[dict[str, torch.Tensor]]:
            for batch in self.batches:
                self.batch = batch  # the reference step trains on the same data
                yield batch

        loss = torch.zeros((), device=self.device)
        next(train_steps(self.setup, drawn(), None, loss))  # the first optimizer step
        if self.device.type != "cuda":
            loss.item()  # wait for the CPU work (on a GPU the timer synchronises)

    def reference_step(self) -> None:
        """The reference step on the batch the optimised step drew last (the same data), with glibc's default
        allocator settings (the reference does not tune them; heap memory the project kept stays usable)."""
        keep_host_memory(False)
        try:
            self.reference_trainer.step(self.batch)
        finally:
            keep_host_memory(self.device.type == "cpu")

    # ------------------------------------------------------------------ measurements
    def flops(self, step: Callable[[], None]) -> float:
        """FLOPs one step executes (autograd computes no weight gradients for the frozen backbone)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        return float(counter.get_total_flops())

    def peak_memory_mb(self, step: Callable[[], None]) -> float:
        """GPU: max allocated during the step; CPU: peak resident-set growth during it."""
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            step()
            self._sync()
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        with RssPeak() as peak:
            step()
        return peak.peak / 2**20

    def _summary(self, seconds: list[float], flops: float, memory: float) -> dict[str, Any]:
        step = statistics.median(seconds)
        batch = self.cfg.batch_size
        out = {"median_step_s": step, "steps_per_s": 1 / step, "samples_per_s": batch / step,
               "min_step_s": min(seconds), "max_step_s": max(seconds), "steps_timed": len(seconds),
               "tflop_per_step": flops / 1e12, "achieved_tflops": flops / step / 1e12,
               "peak_memory_mb": memory}
        if self.peak_tflops:
            out["mfu"] = flops / step / (self.peak_tflops * 1e12)
        return out

    def header(self) -> dict[str, Any]:
        model = self.setup.raw_model
        return {"config": self.name, "device": device_label(self.device), "device_type": self.device.type,
                "precision": self.accelerator.mixed_precision, "batch_size": self.cfg.batch_size,
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "optimised_tokens": model.sequence_length, "peak_tflops": self.peak_tflops or None}

    def compare(self, warmup: int, steps: int) -> dict[str, Any]:
        head = self.header()
        print(f"config {self.name} | device {head['device']} | precision {head['precision']} | "
              f"batch {self.cfg.batch_size} | warm-up {warmup}, timed {steps} steps per path, interleaved")
        first: dict[str, float] = {}
        times = interleave({"optimised": lambda: self._timed(self.optimised_step),
                            "reference": lambda: self._timed(self.reference_step)}, warmup, steps, first)
        results = {}
        for name, step in (("optimised", self.optimised_step), ("reference", self.reference_step)):
            results[name] = self._summary(times[name], self.flops(step), self.peak_memory_mb(step))
            results[name]["first_step_s"] = first[name]
        ref_tokens = self.reference.prompt(self._series()).shape[1] + self.reference.num_patches
        head["reference_tokens"] = ref_tokens
        for name, r in results.items():
            mfu = f" | MFU {r['mfu'] * 100:.1f}%" if "mfu" in r else ""
            mem = "GPU max allocated" if self.device.type == "cuda" else "RSS growth"
            print(f"{name:9s} median step {r['median_step_s'] * 1000:8.1f} ms (min {r['min_step_s'] * 1000:.1f}, "
                  f"max {r['max_step_s'] * 1000:.1f}) | {r['samples_per_s']:7.1f} samples/s | "
                  f"{r['tflop_per_step']:.3f} TFLOP/step, {r['achieved_tflops']:.2f} TFLOP/s{mfu} | "
                  f"peak {mem} {r['peak_memory_mb']:.0f} MB | first step {r['first_step_s']:.1f} s")
        opt, ref = results["optimised"], results["reference"]
        speedup = ref["median_step_s"] / opt["median_step_s"]
        line = (f"speedup {speedup:.2f}x (optimised {opt['steps_per_s']:.3f} steps/s vs reference "
                f"{ref['steps_per_s']:.3f} steps/s, device {head['device']}, config {self.name})")
        print(line)
        return {**head, "results": results, "speedup": speedup, "summary": line}

    def _series(self) -> torch.Tensor:
        x = self.batch["x"].float().to(self.device)
        x, _, _ = self.setup.raw_model.normalizer.normalize(x)
        return x.permute(0, 2, 1).reshape(-1, x.shape[1])

    # ------------------------------------------------------------------ ablation
    def ablations(self) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
        """Each optimisation of the project's step, undone in place (one at a time)."""
        model, llm = self.setup.raw_model, self.setup.raw_model.llm
        current = llm.config._attn_implementation
        other = "sdpa" if current == "eager" else "eager"
        items: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
            f"{current} attention (off: {other})": lambda: attention(llm, eager=other == "eager", maps=False),
            "no attention maps / hidden states (off: eager + kept)": lambda: attention(llm, eager=True, maps=True),
            "cached prompt ids, device statistics (off: host loop + tokenizer)": lambda: tokenized_prompt(
                model, self.reference.prompt),
            "frozen backbone without dropout (off: p=0.1)": lambda: backbone_dropout(llm, REFERENCE_DROPOUT),
            "fused GELU (off: GPT-2's gelu_new ops)": lambda: activation(llm, "gelu_new"),
            "fused Adam (off: single-tensor Adam)": lambda: swapped_optimizer(self.setup, foreach=False),
            "fused Adam (off: foreach Adam)": lambda: swapped_optimizer(self.setup, foreach=True),
        }
        if model.causal_llm:
            items["prompt as a no-grad prefix (off: one joint pass)"] = lambda: attribute(model, "causal_llm", False)
        if self.device.type == "cpu":
            items["large host tensors kept in the heap (off: glibc defaults)"] = lambda: host_memory_defaults()
        if self.dtype != torch.float32:
            items["frozen backbone in compute dtype (off: fp32 weights)"] = lambda: backbone_dtype(llm, torch.float32)
        return items

    def ablate(self, warmup: int, steps: int) -> dict[str, Any]:
        head = self.header()
        print(f"ablation | config {self.name} | device {head['device']} | precision {head['precision']} | "
              f"batch {self.cfg.batch_size} | each row: step with that optimisation off / optimised step, "
              f"{steps} interleaved steps each after {warmup} warm-up")
        rows = []
        for label, undo in self.ablations().items():
            def without(undo: Callable[[], contextlib.AbstractContextManager] = undo) -> float:
                with undo():
                    return self._timed(self.optimised_step)

            times = interleave({"on": lambda: self._timed(self.optimised_step), "off": without}, warmup, steps)
            on, off = statistics.median(times["on"]), statistics.median(times["off"])
            rows.append({"optimisation": label, "on_s": on, "off_s": off, "ratio": off / on})
            print(f"{label:70s} on {on * 1000:8.1f} ms | off {off * 1000:8.1f} ms | x{off / on:.2f}")
        return {**head, "ablation": rows}


@contextlib.contextmanager
def attention(llm: nn.Module, *, eager: bool, maps: bool) -> Iterator[None]:
    config = llm.config
    saved = (config._attn_implementation, config.output_attentions, config.output_hidden_states)
    llm.set_attn_implementation("eager" if eager else "sdpa")
    config.output_attentions = config.output_hidden_states = maps
    try:
        yield
    finally:
        config.output_attentions, config.output_hidden_states = saved[1], saved[2]
        llm.set_attn_implementation(saved[0])


@contextlib.contextmanager
def attribute(owner: object, name: str, value: Any) -> Iterator[None]:
    """`owner.name` set to `value` for the duration (an instance attribute shadows a method of the class)."""
    had, saved = name in vars(owner), vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, saved)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def tokenized_prompt(model: nn.Module, reference: ReferencePrompt) -> Iterator[None]:
    """The prompt built the reference way (host statistics, text, tokenizer) inside the project's forward."""
    prompt = model.prompt

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = reference(x.float())
        return ids, torch.ones_like(ids, dtype=torch.bool)

    prompt.forward = forward
    try:
        yield
    finally:
        del prompt.forward


@contextlib.contextmanager
def backbone_dropout(llm: nn.Module, p: float) -> Iterator[None]:
    drops = [m for m in llm.modules() if isinstance(m, nn.Dropout)]
    saved = [m.p for m in drops]
    for m in drops:
        m.p = p
    try:
        yield
    finally:
        for m, old in zip(drops, saved, strict=True):
            m.p = old


@contextlib.contextmanager
def activation(llm: nn.Module, name: str) -> Iterator[None]:
    from transformers.activations import ACT2FN

    from timellm_launcher.engine.runtime import repeated_blocks

    mlps = [block.mlp for block in repeated_blocks(llm) or [] if hasattr(getattr(block, "mlp", None), "act")]
    saved = [mlp.act for mlp in mlps]
    for mlp in mlps:
        mlp.act = ACT2FN[name]
    try:
        yield
    finally:
        for mlp, act in zip(mlps, saved, strict=True):
            mlp.act = act


@contextlib.contextmanager
def host_memory_defaults() -> Iterator[None]:
    keep_host_memory(False)
    try:
        yield
    finally:
        keep_host_memory(True)


@contextlib.contextmanager
def backbone_dtype(llm: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    saved = next(llm.parameters()).dtype
    llm.to(dtype)
    try:
        yield
    finally:
        llm.to(saved)


_PLAIN_ADAMS: dict[tuple[int, bool], torch.optim.Optimizer] = {}


@contextlib.contextmanager
def swapped_optimizer(setup: Any, *, foreach: bool) -> Iterator[None]:
    """A non-fused Adam over the same parameters (built once, so its state is allocated once)."""
    saved = setup.optimizer
    key = (id(setup), foreach)
    if key not in _PLAIN_ADAMS:
        group = getattr(saved, "optimizer", saved).param_groups[0]  # accelerate wraps the optimizer
        _PLAIN_ADAMS[key] = torch.optim.Adam(group["params"], lr=group["lr"], foreach=foreach, fused=False)
    setup.optimizer = _PLAIN_ADAMS[key]
    try:
        yield
    finally:
        setup.optimizer = saved


def interleave(paths: dict[str, Callable[[], float]], warmup: int, steps: int,
               first: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Alternate the paths step by step, rotating which goes first; returns timed seconds per path (and puts
    each path's first, cold step into `first`: compilation and first-touch allocations show there)."""
    names = list(paths)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + steps):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            seconds = paths[name]()
            if i == 0 and first is not None:
                first[name] = seconds
            if i >= warmup:
                times[name].append(seconds)
    return times
