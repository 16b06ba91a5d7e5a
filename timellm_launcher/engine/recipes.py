"""`--recipe reference`: what the reference Time-LLM code effectively runs, which is not what its flags say.

Read from its run_main.py / run_m4.py (KimMeen/Time-LLM):
- For every --lradj except COS it builds a OneCycleLR and, except under TST, never steps it. Constructing it sets
  the rate to lr/25 (its div_factor) and Adam's beta1 to 0.95 (its max_momentum); both stay. The long-term entry
  point then reads the rate back into --learning_rate after epoch 1, so the whole epoch table starts from lr/25;
  the M4 entry point does not, so only epoch 1 trains at lr/25 and the table starts from lr.
- COS is a CosineAnnealingLR with T_max 20 epochs (whatever --train_epochs says), eta_min 1e-8, Adam's betas.
- --patience defaults to 10 (long-term) and 20 (M4); the published scripts launch 8 processes of --batch_size 24.
- The prompt is its own wording (models/prompt.py, style "reference") with, under --prompt_domain 0, one ETT
  sentence as the description of every dataset.
The project's own recipe ("default") trains at the rates the flags say; see README "Reproducing published numbers".
"""

from __future__ import annotations

import os
from typing import Any

ONE_CYCLE_DIV = 25.0  # OneCycleLR's default div_factor: the rate it starts from is max_lr / 25
ONE_CYCLE_BETA1 = 0.95  # OneCycleLR's default max_momentum, which it writes into Adam's beta1
REFERENCE_COS_EPOCHS = 20  # CosineAnnealingLR(T_max=20)
REFERENCE_PROCESSES = 8  # the published scripts' accelerate launch --num_processes 8
REFERENCE_SCHEDULES = ("type1", "type2", "type3", "constant", "TST", "COS")
REFERENCE_DESCRIPTION = ("The Electricity Transformer Temperature (ETT) is a crucial indicator in the electric "
                         "power long-term deployment.")


def is_reference(cfg: Any) -> bool:
    return cfg.recipe == "reference"


def unstepped_one_cycle(cfg: Any) -> bool:
    """The reference's OneCycleLR is built but never stepped: every schedule but COS and TST."""
    return is_reference(cfg) and cfg.lradj not in ("COS", "TST")


# The embedded default (`python run_main.py` without --data) trains 2 epochs of 250 steps: the recipe measured to beat
# its baselines in a few minutes on a CPU (docs/training.md). A run that names its data trains full epochs.
EMBEDDED_DEFAULTS = {"max_train_steps": 250}


def flag_defaults(cfg: Any, given: set[str]) -> dict[str, int]:
    """Flag values the recipe (and the embedded default) set where the command line leaves them out."""
    defaults = dict(EMBEDDED_DEFAULTS) if "data" not in given else {}
    if is_reference(cfg):
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        defaults.update({"patience": 20 if cfg.is_short_term else 10,
                         "grad_accum": max(1, REFERENCE_PROCESSES // processes)})  # the global batch of 8 processes
    return defaults


def adam_betas(cfg: Any) -> tuple[float, float]:
    return (ONE_CYCLE_BETA1, 0.999) if unstepped_one_cycle(cfg) else (0.9, 0.999)


def schedule_divisors(cfg: Any) -> dict[str, float]:
    """ScheduleParams fields: epoch 1 trains at lr / start_div, the epoch table starts from lr / table_div."""
    if not unstepped_one_cycle(cfg):
        return {}
    long_term = not cfg.is_short_term
    return {"start_div": ONE_CYCLE_DIV, "table_div": ONE_CYCLE_DIV if long_term else 1.0}


def cos_epochs(cfg: Any) -> int:
    """The COS schedule's period in epochs."""
    return REFERENCE_COS_EPOCHS if is_reference(cfg) else cfg.train_epochs


def summary(cfg: Any, lr: float) -> str:
    """One line saying what --recipe reference changed, for the run's header."""
    if not is_reference(cfg):
        return ""
    parts = []
    if unstepped_one_cycle(cfg):
        divs = schedule_divisors(cfg)
        epochs = "every epoch's rate from" if divs["table_div"] > 1 else "epoch 1 at"
        parts.append(f"{epochs} lr/25 = {lr / ONE_CYCLE_DIV:.4g} and Adam beta1 {ONE_CYCLE_BETA1} (an unstepped "
                     "OneCycleLR)")
    elif cfg.lradj == "COS":
        parts.append(f"COS over {REFERENCE_COS_EPOCHS} epochs")
    parts.append(f"patience {cfg.patience}, grad_accum {cfg.grad_accum}, the reference's prompt wording")
    return "--recipe reference: " + "; ".join(parts)


# A tiny Time-LLM for smoke runs, tests and benchmarks of the data path: a 1-layer, 64-wide random GPT-2 and 100
# prototypes (scripts/common.sh's SMOKE_ARGS hold the same flags; tests/test_scripts.py checks that they do).
TINY_MODEL = ("--llm_model", "GPT2", "--llm_init", "random", "--llm_layers", "1", "--llm_dim", "64",
              "--num_tokens", "100", "--d_model", "8", "--d_ff", "16", "--n_heads", "2")
# The tiny model on short windows, fp32 on every CPU (tests and benchmarks; the scripts keep their own windows).
TINY_FLAGS = (*TINY_MODEL, "--seq_len", "48", "--pred_len", "12", "--patch_len", "8", "--stride", "8",
              "--learning_rate", "0.005", "--mixed_precision", "no")
