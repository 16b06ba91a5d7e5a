"""Speed work that must not change results: the optimised forward against the reference path, --compile and
--device_data against the default path, the validation cadence, resume with the device sampler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.reference_path import ReferenceTimeLLM, ReferenceTrainer
from conftest import ROOT, TINY, reset_accelerate, run_cli
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.train.schedules import score_test_after_epoch, validate_after_epoch, validate_after_step
from timellm_launcher.models.backbone import is_causal, load_backbone
from timellm_launcher.models.time_llm import TimeLLM


def model_pair(dtype: torch.dtype) -> tuple[TimeLLM, ReferenceTimeLLM]:
    torch.manual_seed(0)
    backbone = load_backbone("GPT2", llm_init="random", llm_layers=2, llm_dim=64, dtype=dtype)
    model = TimeLLM(backbone, description="test data", seq_len=48, pred_len=12, d_model=8, n_heads=2, d_ff=16,
                    patch_len=8, stride=8, num_tokens=50, dropout=0.1)
    reference = ReferenceTimeLLM(model, backbone.tokenizer, "test data", seq_len=48, pred_len=12, dropout=0.1,
                                 dtype=dtype)
    return model.eval(), reference.eval()


# The two paths build different prompt texts on purpose (the project rounds values, searches lags in
# 1..L/2 and pads to a fixed length with a mask; see models/prompt.py), so each sample is compared
# with the reference fed the project's own prompt ids for it, unpadded: then patch embedding,
# reprogramming (SDPA vs einsum/softmax), the backbone (SDPA vs eager, masked padding and shifted
# positions vs none), the head and RevIN must agree. In bf16 the tolerance is bf16's: the project keeps the
# trainable parts in fp32 under autocast while the reference (as DeepSpeed holds it) has them in bf16.
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 6e-2)])
def test_optimised_forward_equals_reference_forward(dtype, tolerance):
    model, reference = model_pair(dtype)
    x = torch.randn(5, 48, 1) * 3 + 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
        ours = model(x)
        series, _, _ = model.normalizer.normalize(x)
        ids, mask = model.prompt(series[..., 0])
        assert not mask.all(), "the samples' prompts should differ in length, so padding is exercised"
    with torch.no_grad():
        for b in range(x.shape[0]):
            theirs = reference(x[b:b + 1], prompt_ids=ids[b][mask[b]].unsqueeze(0))
            assert theirs.dtype == torch.float32 and ours.dtype == torch.float32
            torch.testing.assert_close(ours[b:b + 1], theirs, rtol=tolerance, atol=tolerance)


def test_reference_path_tokenizes_in_forward_and_trains():
    _, reference = model_pair(torch.float32)
    series = torch.randn(3, 48)
    texts = reference.prompt.texts(series)
    assert texts[0].startswith("<|start_prompt|>") and "top 5 lags are : [" in texts[0]
    assert reference.prompt(series).shape[0] == 3
    trainer = ReferenceTrainer(reference, lr=1e-2)
    batch = {"x": torch.randn(4, 48, 1), "y": torch.randn(4, 12, 1)}
    before = [p.detach().clone() for p in reference.parameters() if p.requires_grad]
    first = trainer.step(batch)
    assert first > 0
    after = [p for p in reference.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def _forward_backward(model: TimeLLM, x: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_same_gradients(got: dict, expected: dict, tolerance: float) -> None:
    """Summation order differs, so gradients agree to the tolerance relative to the largest gradient element (some
    parameters, e.g. the query bias before a softmax, get gradients that are zero up to rounding)."""
    scale = max(grad.abs().max().item() for grad in expected.values())
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_prompt_gives_the_joint_pass_outputs_and_gradients(dtype):
    """With a causal backbone the description's keys/values are computed once, the rest of the prompt runs without
    autograd in training and the patches run on that cache; outputs and every trainable gradient (and the eval
    forward) must equal one joint pass over the whole sequence."""
    model, _ = model_pair(dtype)
    assert model.causal_llm
    calls: list[int] = []
    model.llm.register_forward_hook(lambda m, a, k, o: calls.append(k["inputs_embeds"].shape[1]), with_kwargs=True)
    x = torch.randn(5, 48, 1) * 3 + 1
    autocast = dtype != torch.float32
    cached = _forward_backward(model, x, autocast)
    head, rest = model.prompt.head_length, model.prompt.length - model.prompt.head_length
    assert calls == [head, rest, model.num_patches], "the head once, then the rest of the prompt, then the patches"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cached_eval = model(x)
    assert calls[3:] == [rest + model.num_patches]
    model.causal_llm = False
    calls.clear()
    joint = _forward_backward(model, x, autocast)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        joint_eval = model(x)
    assert calls == [model.sequence_length] * 2
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(cached[0], joint[0], rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(cached_eval, joint_eval, rtol=tolerance, atol=tolerance)
    _assert_same_gradients(cached[1], joint[1], 1e-4 if dtype == torch.float32 else 2e-2)


def test_cached_prompt_matches_the_joint_pass_with_rotary_positions():
    """LLaMA-style backbones take positions through rotary embeddings: the cache path must give them the same
    position ids as the joint pass."""
    torch.manual_seed(0)
    backbone = load_backbone("LLAMA", llm_init="random", llm_layers=2, llm_dim=64)
    model = TimeLLM(backbone, description="test data", seq_len=48, pred_len=12, d_model=8, n_heads=2, d_ff=16,
                    patch_len=8, stride=8, num_tokens=50, dropout=0.1).eval()
    assert model.causal_llm
    x = torch.randn(5, 48, 1) * 3 + 1
    cached = _forward_backward(model, x, autocast=False)
    model.causal_llm = False
    joint = _forward_backward(model, x, autocast=False)
    torch.testing.assert_close(cached[0], joint[0], rtol=1e-5, atol=1e-5)
    _assert_same_gradients(cached[1], joint[1], 1e-4)


def test_only_decoder_backbones_count_as_causal():
    assert is_causal(load_backbone("GPT2", llm_init="random", llm_layers=1, llm_dim=64).model)
    assert not is_causal(load_backbone("MiniLM", llm_layers=1).model)  # bidirectional: the prompt sees the patches


def test_mapping_follows_word_embeddings_loaded_in_place():
    """The prototypes follow weights loaded in place into the frozen word embeddings (nothing derived from them is
    left stale)."""
    model, _ = model_pair(torch.float32)
    before = model.prototypes().clone()
    words = model.llm.get_input_embeddings().weight
    words.copy_(torch.randn_like(words))
    expected = torch.addmm(model.mapping.bias.unsqueeze(1), model.mapping.weight, words)
    after = model.prototypes()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected)


# ------------------------------------------------------------------ same training, other path
def _train(ett_root, tmp_path: Path, *extra: str) -> dict:
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *TINY, "--train_epochs", "2",
            "--max_train_steps", "8", "--lradj", "constant", "--seed", "3", *extra]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    return result


@pytest.fixture(scope="module")
def default_run(ett_root, tmp_path_factory):
    reset_accelerate()
    return _train(ett_root, tmp_path_factory.mktemp("default"))


def test_device_data_trains_exactly_like_the_dataloader(ett_root, tmp_path, default_run):
    """The device sampler draws accelerate's permutation, so the same batches in the same order."""
    mine = _train(ett_root, tmp_path, "--device_data")
    for a, b in zip(mine["history"], default_run["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_mse"] == pytest.approx(b["val_mse"], rel=1e-6)
    assert mine["metrics"]["test"]["mse"] == pytest.approx(default_run["metrics"]["test"]["mse"], rel=1e-6)


def test_compile_trains_to_the_same_loss(ett_root, tmp_path, default_run):
    mine = _train(ett_root, tmp_path, "--compile")
    for a, b in zip(mine["history"], default_run["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-3)
    assert mine["metrics"]["test"]["mse"] == pytest.approx(default_run["metrics"]["test"]["mse"], rel=2e-3)


def test_device_loader_shards_a_permutation_without_overlap(ett_root):
    from timellm_launcher.data_provider.data_factory import build_data
    from timellm_launcher.data_provider.device_batches import DeviceWindowLoader

    cfg = Config(data="ETTh1", root_path=str(ett_root), features="M", seq_len=48, pred_len=12)
    train = build_data(cfg.data_options()).datasets["train"]
    shards = [DeviceWindowLoader(train, 32, torch.device("cpu"), seed=5, num_processes=3, process_index=r)
              for r in range(3)]
    orders = [s.order() for s in shards]
    assert all(len(o) == len(shards[0]) == len(train) // 32 // 3 for o in orders)
    seen = torch.cat([o.flatten() for o in orders])
    assert len(seen.unique()) == len(seen)  # every sample at most once per epoch
    shards[0].set_epoch(1)
    assert not torch.equal(shards[0].order(), orders[0])  # a new order each epoch
    resumed = list(shards[1].skip_first(2))
    assert torch.equal(resumed[0]["x"], train.cut(train.values, orders[1][2])["x"])
    assert len(resumed) == len(shards[1]) - 2


# ------------------------------------------------------------------ cadence
def test_cadence_rules():
    cfg = Config(train_epochs=5, val_every=2, val_every_steps=3, test_every=2)
    assert [e for e in range(1, 6) if validate_after_epoch(cfg, e)] == [2, 4, 5]  # the last always
    assert [s for s in range(1, 10) if validate_after_step(cfg, s, epoch_done=False)] == [3, 6, 9]
    assert not validate_after_step(cfg, 3, epoch_done=True)  # the epoch end validates instead
    assert [e for e in range(1, 6) if score_test_after_epoch(cfg, e)] == [2, 4]
    assert not any(score_test_after_epoch(Config(test_every=0), e) for e in range(1, 6))


def test_val_every_and_test_every_in_a_run(ett_root, tmp_path):
    result = _train(ett_root, tmp_path, "--train_epochs", "3", "--val_every", "2", "--test_every", "1")
    history = result["history"]
    assert [h["val_mse"] is not None for h in history] == [False, True, True]
    assert all(h["test_mse"] is not None and h["test_mse"] > 0 for h in history)
    assert len(result["validations"]) == 2 and result["best_epoch"] in (2, 3)
    assert all(h["step_s"] > 0 and h["samples_per_s"] > 0 for h in history)


def test_validation_inside_epochs_can_pick_a_mid_epoch_best(ett_root, tmp_path):
    result = _train(ett_root, tmp_path, "--val_every_steps", "3")
    steps = [v["global_step"] for v in result["validations"]]
    assert steps == [3, 6, 8, 9, 12, 15, 16]  # 8 steps per epoch; epoch ends at 8 and 16
    best = min(result["validations"], key=lambda v: v["val_mse"])
    assert result["best_step"] == best["global_step"] and result["metrics"]["val"]["mse"] == best["val_mse"]


@pytest.mark.parametrize("flush", [True, False])
def test_entry_points_flush_subnormals_in_every_thread(flush):
    """prepare_process (run first by run_main.py, the estimator and the benchmarks) makes CPU arithmetic treat
    subnormals as zero in torch's worker threads too: a large elementwise op runs on all of them."""
    code = ("import sys; from timellm_launcher.engine.cli import prepare_process; "
            "prepare_process(flush_denormals=sys.argv[1] == '1')\n"
            "import torch; x = torch.full((1 << 22,), 1e-39); print(int(((x * 1.0) != 0).sum()))")
    out = subprocess.run([sys.executable, "-c", code, "1" if flush else "0"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert int(out.stdout.split()[-1]) == (0 if flush else 1 << 22)
