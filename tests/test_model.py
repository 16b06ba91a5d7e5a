"""Time-LLM's model: shapes, frozen backbone, the table-built prompt against the tokenizer, backbones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataOptions, build_data
from timellm_launcher.engine.config import Config
from timellm_launcher.engine.model_io import build_model
from timellm_launcher.models.backbone import gpt2_tokenizer_from_package, load_backbone, minilm_dir
from timellm_launcher.models.prompt import StatisticsPrompt
from timellm_launcher.models.time_llm import TimeLLM


def tiny_model(pred_len: int = 12, seq_len: int = 48, dropout: float = 0.0) -> TimeLLM:
    torch.manual_seed(0)
    backbone = load_backbone("GPT2", llm_init="random", llm_layers=1, llm_dim=64)
    return TimeLLM(backbone, description="test data", seq_len=seq_len, pred_len=pred_len, d_model=8, n_heads=2,
                   d_ff=16, patch_len=8, stride=8, num_tokens=50, dropout=dropout)


@pytest.mark.parametrize("features,n_in", [("S", 1), ("M", 1), ("MS", 7)])
def test_output_shapes(ett_root, features, n_in):
    cfg = Config(data="ETTh1", root_path=str(ett_root), features=features, seq_len=48, pred_len=12,
                 llm_model="GPT2", llm_init="random", llm_layers=1, llm_dim=64, num_tokens=50, d_model=8,
                 d_ff=16, n_heads=2, patch_len=8, stride=8)
    data = build_data(cfg.data_options())
    batch = data.datasets["train"].__getitems__([0, 1, 2])
    assert batch["x"].shape == (3, 48, n_in)
    model = build_model(cfg, data.description)
    out = model(batch["x"])
    assert out.shape == (3, 12, n_in)
    assert out[..., -batch["y"].shape[-1]:].shape == batch["y"].shape


def test_frozen_backbone_stays_bit_identical_and_trainable_parts_move():
    model = tiny_model()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith("llm.") for n in frozen) and not any(n.startswith("llm.") for n in trainable)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = F.mse_loss(model(torch.randn(4, 48, 1)), torch.randn(4, 12, 1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
        else:
            assert not torch.equal(p, trainable[name]), name


def test_frozen_backbone_runs_without_dropout_in_training():
    model = tiny_model(dropout=0.0).train()
    assert model.training and model.llm.training
    assert all(m.p == 0 for m in model.llm.modules() if isinstance(m, torch.nn.Dropout))
    x = torch.randn(4, 48, 1)
    torch.testing.assert_close(model(x), model(x))  # deterministic: no dropout anywhere


def _windows(ett_root, n: int = 24, seq_len: int = 96) -> torch.Tensor:
    data = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="M", seq_len=seq_len, pred_len=24))
    ds = data.datasets["test"]
    x = ds.__getitems__(list(range(0, len(ds), len(ds) // n))[:n])["x"][..., 0]
    return (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)


@pytest.mark.parametrize("which", ["gpt2", "minilm"])
def test_prompt_ids_equal_tokenizer_ids(ett_root, which):
    tokenizer = gpt2_tokenizer_from_package() if which == "gpt2" else AutoTokenizer.from_pretrained(minilm_dir())
    prompt = StatisticsPrompt(tokenizer, "The ETT data of electricity transformers.", seq_len=96, pred_len=24)
    x = _windows(ett_root)
    ids, mask = prompt(x)
    slots = prompt.slot_indices(x)
    for row in range(len(x)):
        text = prompt.text_for(slots[row].tolist())
        assert ids[row][mask[row]].tolist() == tokenizer(text)["input_ids"], text
        head, valid = prompt.head_length, int(mask[row].sum())
        assert mask[row][:head].all() and ids[row][:head].tolist() == prompt.head_ids().tolist()
        assert not mask[row][head:head + len(mask[row]) - valid].any()  # then padding, then the statistics
    # the statistics in the text are the window's own
    text = prompt.text_for(slots[0].tolist())
    assert f"min value {x[0].min().item():.2f}" in text and f"max value {x[0].max().item():.2f}" in text
    assert ("upward" in text) == bool(x[0, -1] > x[0, 0])


def test_prompt_lags_find_the_period():
    tokenizer = gpt2_tokenizer_from_package()
    prompt = StatisticsPrompt(tokenizer, "d", seq_len=96, pred_len=24)
    t = torch.arange(96, dtype=torch.float32)
    x = torch.sin(2 * torch.pi * t / 32).unsqueeze(0)  # three whole periods: lag 32 correlates perfectly
    text = prompt.text_for(prompt.slot_indices(x)[0].tolist())
    assert "lags are 32," in text


def test_forecast_does_not_depend_on_batch_companions():
    model = tiny_model().eval()
    x = torch.randn(6, 48, 1) * torch.tensor([1, 100, 0.01, 5, 1e3, 0.1]).view(6, 1, 1)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(6)])
    # compared in each sample's own units (RevIN scales the forecast by the window's std, up to 1e3 here), so
    # float32 round-off of a different batch shape stays ~1e-6 while any leakage between samples would be O(1)
    scale = x.std(dim=1, keepdim=True)
    torch.testing.assert_close(together / scale, alone / scale, rtol=1e-5, atol=1e-5)


def test_llm_layers_truncates_and_refuses_more():
    backbone = load_backbone("MiniLM", llm_layers=3)
    assert len(backbone.model.encoder.layer) == 3
    with pytest.raises(UserError, match="--llm_layers 7: MiniLM has only 6 layers"):
        load_backbone("MiniLM", llm_layers=7)


def test_llm_dim_is_read_from_the_model():
    with pytest.raises(UserError, match="--llm_dim 512 does not match MiniLM's width 384"):
        load_backbone("MiniLM", llm_layers=1, llm_dim=512)


def test_missing_pretrained_weights_give_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="--llm_init random"):
        load_backbone("GPT2", llm_layers=1)


def test_pretrained_weights_without_their_tokenizer_are_refused(tmp_path):
    """A folder with the MiniLM weights but no tokenizer files (transformers then builds a 5-token BertTokenizer):
    refused, never read through another or an empty vocabulary."""
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((minilm_dir() / name).read_bytes())
    with pytest.raises(UserError, match="knows 5 tokens but the weights hold 30522; its vocabulary files are missing"):
        load_backbone("BERT", llm_path=str(tmp_path), llm_layers=1)
    random = load_backbone("BERT", llm_path=str(tmp_path), llm_layers=1, llm_init="random")  # no weights to misread
    assert random.tokenizer.vocab_size == random.model.config.vocab_size


def test_backbone_uses_sdpa_and_compute_dtype():
    backbone = load_backbone("MiniLM", llm_layers=1, dtype=torch.bfloat16)
    assert backbone.model.config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in backbone.model.parameters())


def test_minilm_loads_real_pretrained_weights_offline():
    """all-MiniLM-L6-v2 places paraphrases closer than unrelated sentences (random weights would not)."""
    backbone = load_backbone("MiniLM", llm_layers=6)
    tokenizer = backbone.tokenizer
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    related, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert related > 0.6 and unrelated < 0.3, (related, unrelated)
    # and the weights are the shipped ones, not a fresh initialisation
    reference = AutoModel.from_pretrained(minilm_dir())
    assert torch.equal(backbone.word_embeddings, reference.get_input_embeddings().weight)
