"""The torch SWT against PyWavelets, its inverse, energy, mixed precision, and the band patch embedding.

Settings compared: `pywt.swt(x, wavelet, level, trim_approx=True, norm=...)` gives the default bands
[cA_n, cD_n, ..., cD_1]; `trim_approx=False` gives the --use_all_coeffs bands [cA_n, cD_n, ..., cA_1, cD_1];
both with norm=False (PyWavelets' default) and norm=True (what the model uses).
"""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import Config
from timellm_launcher.models.layers import PatchEmbedding
from timellm_launcher.models.wavelets import SWT, WAVELETS


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("all_coeffs", [False, True])
def test_swt_equals_pywavelets(wavelet, level, norm, all_coeffs):
    x = np.random.default_rng(level).normal(size=(4, 3, 64))
    bands = SWT(wavelet, level, 64, norm=norm, all_coeffs=all_coeffs)(torch.from_numpy(x))
    expected = pywt.swt(x, wavelet, level=level, trim_approx=not all_coeffs, norm=norm)
    if all_coeffs:
        expected = [band for pair in expected for band in pair]
    assert bands.shape == (4, 3, len(expected), 64)
    np.testing.assert_allclose(bands.numpy(), np.stack(expected, axis=-2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("all_coeffs", [False, True])
def test_inverse_swt_reconstructs_the_input(wavelet, level, all_coeffs):
    x = torch.randn(5, 2, 96, dtype=torch.float64)
    for norm in (False, True):
        swt = SWT(wavelet, level, 96, norm=norm, all_coeffs=all_coeffs)
        bands = swt(x)
        torch.testing.assert_close(swt.inverse(bands), x.float(), rtol=0, atol=2e-5)


def test_pywavelets_inverse_agrees():
    x = np.random.default_rng(0).normal(size=64)
    swt = SWT("sym4", 3, 64, norm=True)
    bands = swt(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pywt.iswt(list(bands), "sym4", norm=True), x, atol=1e-5)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_normalised_bands_partition_the_energy(wavelet):
    x = torch.randn(8, 128)
    bands = SWT(wavelet, 3, 128, norm=True)(x)
    torch.testing.assert_close(bands.square().sum(dim=(-1, -2)), x.square().sum(dim=-1), rtol=1e-4, atol=1e-4)


def test_swt_under_bf16_autocast_computes_in_float32():
    x = torch.randn(4, 64)
    swt = SWT("db4", 3, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bands = swt(x.bfloat16())
    assert bands.dtype == torch.float32
    torch.testing.assert_close(bands, swt(x.bfloat16().float()))


def test_swt_traces_as_one_graph():
    """No Python loop over samples and no graph break: torch.compile can take it whole."""
    swt = SWT("db6", 3, 96)
    compiled = torch.compile(swt, backend="eager", fullgraph=True)
    x = torch.randn(6, 96)
    torch.testing.assert_close(compiled(x), swt(x))


def test_swt_level_must_divide_seq_len():
    with pytest.raises(UserError, match=r"--seq_len 100 must be divisible by 2\*\*--swt_level \(8\)"):
        Config(use_swt=True, seq_len=100, swt_level=3, patch_len=16).validate()
    Config(use_swt=True, seq_len=96, swt_level=3).validate()
    Config(use_swt=False, seq_len=100, swt_level=3).validate()  # only checked when the SWT is on
    with pytest.raises(UserError, match="--dwt_prompt_level"):
        Config(use_dwt_prompt=True, seq_len=16, patch_len=8, dwt_prompt_level=5).validate()


def test_patch_embedding_carries_every_band_of_a_patch():
    """With the centre tap of the conv set to the identity, patch p's embedding is band 0's values of the
    patch, then band 1's: bands x patch_len values per patch, band by band."""
    patch_len, stride, bands, length = 4, 4, 2, 16
    embed = PatchEmbedding(bands * patch_len, patch_len, stride, dropout=0.0, channels=bands)
    assert embed.conv.weight.shape == (bands * patch_len, bands * patch_len, 3)
    with torch.no_grad():
        embed.conv.weight.zero_()
        embed.conv.weight[:, :, 1] = torch.eye(bands * patch_len)
    x = torch.arange(bands * length, dtype=torch.float32).reshape(1, bands, length)
    out = embed(x)  # [1, patches, bands * patch_len]
    assert out.shape == (1, PatchEmbedding.count(length, patch_len, stride), bands * patch_len)
    torch.testing.assert_close(out[0, 1], torch.cat([x[0, 0, 4:8], x[0, 1, 4:8]]))
    single = PatchEmbedding(8, patch_len, stride, dropout=0.0)
    assert single(torch.randn(3, length)).shape == (3, 5, 8)
