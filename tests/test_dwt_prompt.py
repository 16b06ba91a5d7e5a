"""The DWT prompt: ids equal the tokenizer's for every compression level; statistics of known signals."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from timellm_launcher.data_provider.data_factory import DataOptions, build_data
from timellm_launcher.models.backbone import gpt2_tokenizer_from_package, minilm_dir
from timellm_launcher.models.dwt_prompt import COMPRESSIONS, WaveletPromptStatistics
from timellm_launcher.models.prompt import StatisticsPrompt

SEQ_LEN = 96


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)


def _windows(ett_root, n: int = 16) -> torch.Tensor:
    data = build_data(DataOptions(data="ETTh1", root_path=str(ett_root), features="M", seq_len=SEQ_LEN, pred_len=24))
    ds = data.datasets["test"]
    return _normalised(ds.__getitems__(list(range(0, len(ds), len(ds) // n))[:n])["x"][..., 0])


@pytest.fixture(scope="module")
def tokenizers():
    return {"gpt2": gpt2_tokenizer_from_package(), "minilm": AutoTokenizer.from_pretrained(minilm_dir())}


@pytest.mark.parametrize("which", ["gpt2", "minilm"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_dwt_prompt_ids_equal_tokenizer_ids(ett_root, tokenizers, which, compression):
    tokenizer = tokenizers[which]
    extension = WaveletPromptStatistics("db4", 3, SEQ_LEN, compression)
    prompt = StatisticsPrompt(tokenizer, "The ETT data.", seq_len=SEQ_LEN, pred_len=24, extension=extension)
    x = _windows(ett_root)
    ids, mask = prompt(x)
    slots = prompt.slot_indices(x)
    texts = [prompt.text_for(slots[row].tolist()) for row in range(len(x))]
    for row, text in enumerate(texts):
        assert ids[row][mask[row]].tolist() == tokenizer(text)["input_ids"], text
    text = texts[0]
    assert "Wavelet statistics:" in text and "dominant band" in text and "signal-to-noise" in text
    assert ("energy shares approximation" in text) == (compression != "minimal")
    assert ("trend across scales" in text) == (compression != "minimal")
    assert (" dB," in text and "coarse to fine:" in text) == (compression == "detailed")
    # the energy shares printed are the window's own
    if compression != "minimal":
        shares = extension.statistics(x[:1])["shares"][0]
        assert f"approximation {round(shares[0].item() * 100)}%" in text


def test_prompt_grows_with_compression(tokenizers):
    lengths = [StatisticsPrompt(tokenizers["gpt2"], "d", SEQ_LEN, 24,
                                extension=WaveletPromptStatistics("db4", 3, SEQ_LEN, c)).length for c in COMPRESSIONS]
    base = StatisticsPrompt(tokenizers["gpt2"], "d", SEQ_LEN, 24).length
    assert base < lengths[0] < lengths[1] < lengths[2]


def _stats(x: torch.Tensor, level: int = 3) -> dict[str, torch.Tensor]:
    return WaveletPromptStatistics("db4", level, x.shape[-1], "detailed").statistics(_normalised(x))


def test_pure_sine_concentrates_in_one_band():
    t = torch.arange(SEQ_LEN, dtype=torch.float32)
    s = _stats(torch.sin(2 * math.pi * t / 12).unsqueeze(0))  # frequency 1/12 lies in detail 3's octave
    assert s["dominant"].item() == 1  # [approximation, detail 3, detail 2, detail 1]
    assert s["shares"][0, 1] > 0.7
    assert s["snr_db"].item() >= 10  # no noise in the finest details


def test_white_noise_is_spread_high_frequency_and_noisy():
    x = torch.randn(64, SEQ_LEN, generator=torch.Generator().manual_seed(0))
    s = _stats(x)
    torch.testing.assert_close(s["shares"].sum(dim=1), torch.ones(64))
    mean_shares = s["shares"].mean(dim=0)  # dyadic octaves of a flat spectrum: about 1/8, 1/8, 1/4, 1/2
    assert mean_shares[3] > mean_shares[2] > mean_shares[1]
    assert mean_shares.max() < 0.6  # spread, not one band
    assert (s["dominant"] == 3).float().mean() > 0.9
    assert (s["snr_db"] < 3).all()  # every window reads "low"


@pytest.mark.parametrize("sign,expected", [(1.0, 0), (-1.0, 1)])  # consistent upward / downward
def test_trend_is_approximation_dominant_and_consistent(sign, expected):
    t = torch.arange(SEQ_LEN * 2, dtype=torch.float32)
    noise = 0.05 * torch.randn(4, SEQ_LEN * 2, generator=torch.Generator().manual_seed(1))
    s = _stats(sign * t / 50 + noise)
    assert (s["dominant"] == 0).all()
    assert (s["shares"][:, 0] > 0.8).all()
    assert (s["consistency"] == expected).all()
    assert ((s["slopes"] > 0) == (sign > 0)).all()
    assert (s["snr_db"] >= 10).all()
