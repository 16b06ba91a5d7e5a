"""--recipe reference trains at what the reference Time-LLM code effectively runs: checked against torch's own
OneCycleLR / CosineAnnealingLR driven the way the reference's run_main.py and run_m4.py drive them."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, run_cli, synthetic_frame
from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.config import build_parser, config_from_args
from timellm_launcher.engine.train.builders import build_optimizer
from timellm_launcher.engine.train.schedules import build_scheduler, schedule_params
from timellm_launcher.models.backbone import load_tokenizer
from timellm_launcher.models.prompt import StatisticsPrompt

EPOCHS, STEPS, LR = 6, 3, 0.01


def reference_rates(lradj: str, short_term: bool) -> tuple[list[float], list[float]]:
    """(rate, beta1) of each epoch as the reference's loop produces them, with torch's schedulers."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    if lradj == "COS":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20, eta_min=1e-8)
    else:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, steps_per_epoch=STEPS, epochs=EPOCHS,
                                                        pct_start=0.2)
    learning_rate = LR  # args.learning_rate
    rates, betas = [], []
    for epoch in range(EPOCHS):
        rates.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"][0])
        if lradj == "COS":
            optimizer.step()
            scheduler.step()
            continue
        if epoch == 0 and not short_term:  # run_main.py reads the rate back; run_m4.py does not
            learning_rate = optimizer.param_groups[0]["lr"]
        e = epoch + 1  # adjust_learning_rate(..., epoch + 1, ...)
        table = {"type1": {e: learning_rate * 0.5 ** (e - 1)},
                 "type2": {2: 5e-5, 4: 1e-5, 6: 5e-6, 8: 1e-6, 10: 5e-7, 15: 1e-7, 20: 5e-8},
                 "type3": {e: learning_rate if e < 3 else learning_rate * 0.9 ** (e - 3)},
                 "constant": {e: learning_rate}}[lradj]
        if e in table:
            optimizer.param_groups[0]["lr"] = table[e]
    return rates, betas


def config(*flags: str, env: dict | None = None, monkeypatch=None):
    if monkeypatch is not None:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
    return config_from_args(build_parser("test").parse_args(list(flags)))


def our_rates(cfg) -> tuple[list[float], list[float]]:
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(cfg, model, cfg.learning_rate)
    scheduler = build_scheduler(optimizer, cfg.lradj, cfg.learning_rate, STEPS, schedule_params(cfg))
    rates, betas = [], []
    for _ in range(EPOCHS):
        rates.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"][0])
        for _ in range(STEPS):
            optimizer.step()
            scheduler.step()
    return rates, betas


@pytest.mark.parametrize("lradj", ["type1", "type2", "type3", "constant", "COS"])
def test_long_term_reference_rates_and_beta1(lradj):
    cfg = config("--recipe", "reference", "--lradj", lradj, "--learning_rate", str(LR),
                 "--train_epochs", str(EPOCHS))
    rates, betas = our_rates(cfg)
    want_rates, want_betas = reference_rates(lradj, short_term=False)
    assert rates == pytest.approx(want_rates, rel=1e-9)
    assert betas == pytest.approx(want_betas)
    if lradj == "COS":
        assert rates[0] == LR and betas[0] == 0.9  # COS builds no OneCycleLR
    else:
        assert rates[0] == pytest.approx(LR / 25) and betas[0] == 0.95


@pytest.mark.parametrize("lradj", ["type1", "type2", "constant"])
def test_m4_reference_rates_only_divide_the_first_epoch(lradj, tmp_path):
    cfg = config("--recipe", "reference", "--task_name", "short_term_forecast", "--data", "m4", "--lradj", lradj,
                 "--learning_rate", str(LR), "--train_epochs", str(EPOCHS), "--patch_len", "1", "--stride", "1")
    rates, betas = our_rates(cfg)
    want_rates, want_betas = reference_rates(lradj, short_term=True)
    assert rates == pytest.approx(want_rates, rel=1e-9)
    assert betas == pytest.approx(want_betas)


def test_default_recipe_trains_at_the_rates_the_flags_say():
    rates, betas = our_rates(config("--lradj", "type1", "--learning_rate", str(LR), "--train_epochs", str(EPOCHS)))
    assert rates[:3] == pytest.approx([LR, LR, LR / 2]) and betas[0] == 0.9


def test_reference_flag_defaults_fill_only_what_the_command_line_left(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = config("--recipe", "reference")
    assert (cfg.patience, cfg.grad_accum) == (10, 8)  # a global batch of 8 processes
    m4 = config("--recipe", "reference", "--task_name", "short_term_forecast", "--data", "m4", "--patch_len", "1",
                "--stride", "1")
    assert m4.patience == 20
    assert config("--recipe", "reference", env={"WORLD_SIZE": "2"}, monkeypatch=monkeypatch).grad_accum == 4
    explicit = config("--recipe", "reference", "--patience", "3", "--grad_accum", "1")
    assert (explicit.patience, explicit.grad_accum) == (3, 1)
    assert (config().patience, config().grad_accum) == (3, 1)


def test_reference_refuses_schedules_the_reference_lacks():
    with pytest.raises(UserError, match="--lradj cosine does not exist in the reference"):
        config("--recipe", "reference", "--lradj", "cosine")


def test_reference_prompt_wording():
    tokenizer = load_tokenizer("GPT2")
    prompt = StatisticsPrompt(tokenizer, "About ETT.", 96, 24, style="reference")
    slots = prompt.slot_indices(torch.linspace(-1, 1, 96).unsqueeze(0))[0].tolist()
    text = prompt.text_for(slots)
    assert text.startswith("<|start_prompt|>Dataset description: About ETT.Task description: forecast the next 24 "
                           "steps given the previous 96 steps information; Input statistics: min value -1.00, ")
    assert ", the trend of input is upward, top 5 lags are : [" in text and text.endswith("]<|<end_prompt>|>")
    ids, mask = prompt(torch.linspace(-1, 1, 96).unsqueeze(0))
    assert ids[0][mask[0]].tolist() == tokenizer(text)["input_ids"]


def test_reference_run_prints_what_it_changed(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    synthetic_frame(1200, ["OT"]).to_csv(tmp_path / "small.csv", index=False)
    args = ["--data", "custom", "--root_path", str(tmp_path), "--data_path", "small.csv", "--features", "S", *TINY,
            "--train_epochs", "1", "--max_train_steps", "2", "--recipe", "reference", "--plot_windows", "0"]
    code, result = run_cli(args, tmp_path)
    assert code == 0
    assert result["config"]["recipe"] == "reference" and result["config"]["grad_accum"] == 8
    assert result["history"][0]["lr"] == pytest.approx(0.005 / 25)
    assert "--recipe reference: every epoch's rate from lr/25 = 0.0002 and Adam beta1 0.95" in capsys.readouterr().out
