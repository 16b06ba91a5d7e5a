"""--llm_model none (the "w/o LLM" ablation) and zero-shot transfer (--data_pretrain), end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli, synthetic_frame
from timellm_launcher.engine.report.summarize import main as summarize_main
from timellm_launcher.models.backbone import load_backbone

NO_LLM = [a for a in TINY]
NO_LLM[NO_LLM.index("--llm_model") + 1] = "none"
NO_LLM[NO_LLM.index("--llm_dim") + 1] = "0"  # the width of the MiniLM word embeddings the prototypes come from


def test_no_llm_backbone_has_word_embeddings_and_no_layers():
    backbone = load_backbone("none", llm_layers=2)
    assert backbone.model.config.num_hidden_layers == 0
    assert len(backbone.model.encoder.layer) == 0
    assert backbone.word_embeddings.shape[1] == backbone.hidden_size == 384  # MiniLM's pretrained table
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_no_llm_run_skips_the_llm(ett_root, tmp_path, monkeypatch):
    calls = []
    from transformers.models.bert.modeling_bert import BertModel

    original = BertModel.forward
    monkeypatch.setattr(BertModel, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    args = ["--data", "ETTh1", "--root_path", str(ett_root), "--features", "S", *NO_LLM, "--train_epochs", "1",
            "--max_train_steps", "2"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert calls == []  # the backbone's forward never ran
    assert result["model"]["llm_layers"] == 0 and result["model"]["llm_dim"] == 384
    assert "noLLM" in result["setting"]
    assert result["metrics"]["test"]["mse"] > 0


def test_no_llm_forward_feeds_normalised_reprogrammed_patches_to_the_head():
    from timellm_launcher.engine.config import Config
    from timellm_launcher.engine.model_io import build_model

    cfg = Config(llm_model="none", d_model=8, d_ff=16, n_heads=2, num_tokens=20, seq_len=32, pred_len=8,
                 patch_len=8, stride=8, dropout=0.0)
    model = build_model(cfg, "test").eval()
    x = torch.randn(3, 32, 2)
    out = model(x)
    assert out.shape == (3, 8, 2)
    # by hand: RevIN -> patches -> reprogramming -> the backbone's final normalisation (no affine part) -> first
    # d_ff features -> head -> de-normalise
    z, mean, std = model.normalizer.normalize(x)
    rows = z.permute(0, 2, 1).reshape(6, 32)
    reprogrammed = model.reprogramming(model.patch_embedding(rows), model.prototypes())
    patches = torch.nn.functional.layer_norm(reprogrammed, reprogrammed.shape[-1:])[..., :16]
    expected = model.head(patches.reshape(3, 2, model.num_patches, 16).transpose(2, 3)).permute(0, 2, 1)
    torch.testing.assert_close(out, expected * std + mean)


@pytest.fixture
def target_root(ett_root, tmp_path):
    """ETTh1 (real when present) beside a second, generated ETT-layout file with another level and scale."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ETTh1.csv").symlink_to(ett_root / "ETTh1.csv")
    frame = synthetic_frame(17420, ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"], seed=7)
    frame.iloc[:, 1:] = frame.iloc[:, 1:] * 3 + 50
    frame.to_csv(folder / "ETTh2.csv", index=False)
    return folder


def test_zero_shot_trains_on_one_dataset_and_tests_on_another(target_root, tmp_path, capsys):
    args = ["--data_pretrain", "ETTh1", "--data_path_pretrain", "ETTh1.csv", "--data", "ETTh2", "--data_path",
            "ETTh2.csv", "--root_path", str(target_root), "--features", "S", *TINY, "--train_epochs", "1",
            "--max_train_steps", "2"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    data = result["data"]
    assert data["path"].endswith("ETTh1.csv") and data["test_data"]["path"].endswith("ETTh2.csv")
    assert "ETTh1_ETTh2" in result["setting"]
    # the test set is ETTh2's test split (its own borders), each file scaled by its own train split
    assert data["samples"]["test"] == 2880 - 12 + 1
    from timellm_launcher.data_provider.data_factory import build_data
    from timellm_launcher.engine.config import Config

    cfg = Config(data_pretrain="ETTh1", data_path_pretrain="ETTh1.csv", data="ETTh2", data_path="ETTh2.csv",
                 root_path=str(target_root), features="S", seq_len=48, pred_len=12).validate()
    bundle = build_data(cfg.data_options())
    target = pd.read_csv(target_root / "ETTh2.csv")["OT"].to_numpy()
    train = target[:8640]
    first = bundle.datasets["test"][0]["x"][:, 0].double().numpy()
    expected = (target[11520 - 48:11520] - train.mean()) / train.std()
    assert first == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert bundle.test_data.mean[0] == pytest.approx(train.mean())
    assert bundle.mean[0] != pytest.approx(train.mean())  # the source keeps its own scaler

    assert summarize_main([str(tmp_path / "results")]) == 0
    assert "| ETTh1->ETTh2 | GPT2-1 (random) | 12 |" in capsys.readouterr().out


def test_zero_shot_custom_source_needs_its_path(target_root, tmp_path, capsys):
    code, _ = run_cli(["--data_pretrain", "custom", "--data", "ETTh1", "--root_path", str(target_root), *TINY],
                      tmp_path)
    assert code == 2 and "--data_path_pretrain" in capsys.readouterr().err


def test_pretrained_random_and_no_llm_runs_have_distinct_settings():
    from timellm_launcher.engine.config import Config

    names = {Config(llm_model="MiniLM", llm_init=init).setting for init in ("pretrained", "random")}
    names.add(Config(llm_model="none").setting)
    assert len(names) == 3
