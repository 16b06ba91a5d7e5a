"""Run configuration: one dataclass, one argparse parser generated from it.

Every flag is declared once, as a field with its default and help text, so the
training CLI, the estimator and the tests all see the same vocabulary (the
Time-LLM / Time-Series-Library flag names). The defaults are the embedded run:
`python run_main.py` trains Time-LLM on vic_elec with the pretrained MiniLM.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timellm_launcher.core.errors import UserError
from timellm_launcher.data_provider.data_factory import DataOptions
from timellm_launcher.data_provider.m4 import PATTERNS
from timellm_launcher.engine.recipes import REFERENCE_SCHEDULES, flag_defaults

SHORT_TERM = "short_term_forecast"  # --task_name of M4 (--data m4); a Config says it with is_short_term
# Accelerate's trackers (accelerate.tracking.LOGGER_TYPE_TO_CLASS; tests/test_tracking.py keeps the two equal)
TRACKER_NAMES = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio")


def _flag(default: Any, help: str, choices: list | None = None, group: str = "", *, minimum: int | None = None,
          run_only: bool = False) -> Any:
    """A flag: its default, help text, allowed values, --help group, smallest allowed value, and whether it only
    says how or where to run (run_only: a resumed run may change it) rather than what is trained."""
    return field(default=default, metadata={"help": help, "choices": choices, "group": group, "minimum": minimum,
                                            "run_only": run_only})


@dataclass
class Config:
    # --- basic (TSLib names) ---
    task_name: str = _flag("long_term_forecast", "long_term_forecast, or short_term_forecast (M4, --data m4)",
                           ["long_term_forecast", SHORT_TERM], "basic")
    is_training: int = _flag(1, "1: train then test; 0: test the checkpoint of this setting", [0, 1], "basic",
    run_only=True)
    model_id: str = _flag("", "free-form run id used in the setting name (default: <data>_<seq_len>_<pred_len>)",
                          group="basic")
    model_comment: str = _flag("none", "free-form comment kept in results.json", group="basic", run_only=True)
    model: str = _flag("TimeLLM", "model name", ["TimeLLM"], "basic")
    seed: int = _flag(2021, "random seed; --itr K uses seed, seed+1, ..., seed+K-1", group="basic")
    des: str = _flag("Exp", "experiment description, part of the setting name", group="basic")

    # --- data ---
    data: str = _flag("vic_elec", "dataset: ETTh1 ETTh2 ETTm1 ETTm2 custom vic_elec m4, or long (many series in "
                                  "one CSV/parquet file: --id_col, --time_col, --target)", group="data")
    root_path: str = _flag("./dataset", "folder holding --data_path", group="data", run_only=True)
    data_path: str = _flag("", "CSV file under --root_path (default: <data>.csv; vic_elec needs none)",
                           group="data", run_only=True)
    features: str = _flag("S", "M: all variables, each its own sample; S: the target alone; "
                               "MS: all variables in, the target scored", ["M", "S", "MS"], "data")
    target: str = _flag("", "target column for S/MS (default: OT; Demand for vic_elec; y for --data long)",
                        group="data")
    id_col: str = _flag("unique_id", "--data long: the column naming each series", group="data")
    time_col: str = _flag("ds", "--data long: the date column", group="data")
    val_size: int = _flag(0, "--data long: validation targets per series, its points before the test ones "
                             "(0: pred_len, one window)", group="data", minimum=0)
    test_size: int = _flag(0, "--data long: test targets per series, its last points (0: pred_len, one window)",
                           group="data", minimum=0)
    fillna: str = _flag("none", "what to do with NaN/inf values: none (refuse) | ffill | zero",
                        ["none", "ffill", "zero"], "data")
    percent: int = _flag(100, "few-shot: percent of the training windows to use (1-100)", group="data")
    seq_len: int = _flag(192, "input window length", group="data", minimum=1)
    label_len: int = _flag(0, "decoder start-token length; accepted for TSLib compatibility and ignored: Time-LLM "
                              "has no decoder input (run names keep TSLib's ll field as ll0)", group="data",
                           minimum=0, run_only=True)
    pred_len: int = _flag(48, "forecast horizon", group="data", minimum=1)
    enc_in: int = _flag(0, "number of input variables (0: read from the data; a wrong value is an error)",
                        group="data", minimum=0)
    num_workers: int = _flag(0, "DataLoader worker processes (0: load in the training process)",
                             group="data", minimum=0, run_only=True)
    prefetch_factor: int = _flag(2, "batches each DataLoader worker loads ahead (with --num_workers > 0)",
                                 group="data", minimum=1, run_only=True)
    device_data: bool = _flag(False, "keep the scaled series on the device and cut windows there by index "
                                     "(no DataLoader workers, no host-to-device copy per batch)",
                                     group="data", run_only=True)
    season_length: int = _flag(0, "steps per season for the seasonal naive baseline (0: from the dates' sampling "
                                  "step: a day of sub-daily data, a week of daily data, a year of weekly or "
                                  "monthly data)", group="data", minimum=0)
    levels: tuple[int, ...] = _flag((), "prediction intervals at these levels in percent, e.g. --levels 80 95: "
                                        "split conformal on the best checkpoint's validation residuals, with the "
                                        "test coverage reported (engine/evaluate/intervals.py)", group="outputs",
                                    run_only=True)
    seasonal_patterns: str = _flag("Monthly", "M4 subset (with --data m4)",
                                   list(PATTERNS), "data")
    data_pretrain: str = _flag("", "zero-shot: train and validate on this dataset, test on --data", group="data")
    data_path_pretrain: str = _flag("", "zero-shot: CSV of --data_pretrain under --root_path",
                                    group="data", run_only=True)

    # --- model ---
    d_model: int = _flag(16, "patch embedding width", group="model", minimum=1)
    n_heads: int = _flag(8, "heads of the reprogramming attention", group="model", minimum=1)
    d_ff: int = _flag(32, "per-head width of the reprogramming attention and LLM features fed to the head",
                      group="model", minimum=1)
    dropout: float = _flag(0.1, "dropout of patch embedding, reprogramming and head", group="model")
    patch_len: int = _flag(16, "patch length", group="model", minimum=1)
    stride: int = _flag(8, "patch stride", group="model", minimum=1)
    num_tokens: int = _flag(1000, "text prototypes the patches are reprogrammed onto", group="model", minimum=1)
    prompt_domain: int = _flag(0, "1: dataset description from --content or the prompt bank file",
                               [0, 1], "model")
    content: str = _flag("", "dataset description text for the prompt (with --prompt_domain 1)", group="model")
    prompt_bank_dir: str = _flag("./dataset/prompt_bank", "folder of <data>.txt descriptions "
                                 "(with --prompt_domain 1 and no --content)", group="model")
    llm_model: str = _flag("MiniLM", "backbone: GPT2 LLAMA BERT MiniLM or a Hugging Face id", group="model")
    llm_path: str = _flag("", "local folder holding the backbone (config, weights, tokenizer)",
                          group="model", run_only=True)
    llm_init: str = _flag("pretrained", "pretrained: load weights; random: build from the config",
                          ["pretrained", "random"], "model")
    llm_dim: int = _flag(0, "backbone width (0: read from the model; with --llm_init random sets it)",
                         group="model", minimum=0)
    llm_layers: int = _flag(2, "keep the first N backbone layers", group="model", minimum=1)
    allow_download: bool = _flag(False, "let the backbone be fetched from the Hugging Face hub "
                                        "when it is not found locally", group="model", run_only=True)

    # --- optimisation ---
    recipe: str = _flag("default", "default: this project's recipe (the rates the flags say); reference: what the "
                                   "reference Time-LLM code effectively runs (lr/25 and Adam beta1 0.95 under its "
                                   "unstepped OneCycleLR, COS over 20 epochs, patience 10 or 20 on M4, a global "
                                   "batch of 8 processes, its prompt wording), for comparisons with published numbers",
                        ["default", "reference"], "optimization")
    itr: int = _flag(1, "repeat the experiment K times with seeds seed..seed+K-1",
                     group="optimization", minimum=1, run_only=True)
    train_epochs: int = _flag(2, "training epochs", group="optimization", minimum=1)
    batch_size: int = _flag(32, "training batch size per process", group="optimization", minimum=1)
    eval_batch_size: int = _flag(128, "validation/test batch size per process",
                                 group="optimization", minimum=1, run_only=True)
    patience: int = _flag(3, "early stopping: validations without a better validation MSE (see --val_every)",
                          group="optimization", minimum=1)
    learning_rate: float = _flag(5e-4, "learning rate (the schedule's peak)", group="optimization")
    loss: str = _flag("MSE", "training loss", ["MSE", "MAE", "SMAPE", "MAPE", "MASE"], "optimization")
    lradj: str = _flag("type1", "learning-rate schedule (see README)",
                       ["type1", "type2", "type3", "constant", "TST", "COS", "cosine", "step", "multistep",
                        "plateau"], "optimization")
    pct_start: float = _flag(0.2, "warm-up fraction of the TST (one-cycle) schedule", group="optimization")
    warmup_epochs: int = _flag(0, "linear warm-up epochs of the cosine schedule", group="optimization", minimum=0)
    lr_step_size: int = _flag(1, "epochs between decays of the step schedule", group="optimization", minimum=1)
    lr_gamma: float = _flag(0.5, "decay factor of the step, multistep and plateau schedules", group="optimization")
    lr_milestones: str = _flag("", "comma-separated epochs at which multistep decays (e.g. 3,6)",
                               group="optimization")
    optimizer: str = _flag("adam", "adam, or adamw (no weight decay on biases and norms)", ["adam", "adamw"],
                           "optimization")
    weight_decay: float = _flag(0.01, "AdamW weight decay", group="optimization")
    scale_lr: bool = _flag(False, "scale --learning_rate by sqrt(global batch / --base_batch_size)",
                           group="optimization")
    base_batch_size: int = _flag(32, "batch size --learning_rate was tuned for (with --scale_lr)",
                                 group="optimization", minimum=1)
    val_every: int = _flag(1, "validate every N epochs (the last epoch always); early stopping counts validations",
                           group="optimization", minimum=1)
    val_every_steps: int = _flag(0, "also validate every N optimizer steps inside an epoch (0: off)",
                                 group="optimization", minimum=0)
    test_every: int = _flag(0, "also score the test set every N epochs (0: once, at the end, on the best "
                               "checkpoint)", group="optimization", minimum=0)
    max_train_steps: int = _flag(0, "cap on optimizer steps per epoch (0: full epochs; without --data, the embedded "
                                    "default trains 250 per epoch)", group="optimization", minimum=0)
    use_amp: bool = _flag(False, "mixed precision: bf16 where supported, else fp16", group="optimization")

    # --- precision, DeepSpeed, memory, resume ---
    mixed_precision: str = _flag("auto", "auto | no | fp16 | bf16; auto: --use_amp's choice if given, else what "
                                         "accelerate launch set, else bf16 where the device has bf16 matrix "
                                         "instructions (GPUs with bf16; CPUs with AMX, AVX512-BF16 or ARM BF16), "
                                         "else no", ["auto", "no", "fp16", "bf16"], "distributed")
    deepspeed: bool = _flag(False, "train through DeepSpeed ZeRO with --ds_config (also on under "
                                   "accelerate launch --use_deepspeed)", group="distributed")
    ds_config: str = _flag("", "DeepSpeed config (default: ds_config_zero2.json beside run_main.py)",
                           group="distributed")
    offload_optimizer: str = _flag("none", "cpu: ZeRO-2 optimizer state and step on the CPU (needs DeepSpeed)",
                                   ["none", "cpu"], "distributed")
    gradient_checkpointing: bool = _flag(False, "recompute the frozen backbone's activations in backward "
                                                "(less memory, more compute)", group="distributed")
    grad_accum: int = _flag(1, "micro-batches per optimizer step", group="distributed", minimum=1)
    max_grad_norm: float = _flag(0.0, "clip the gradient norm to this value (0: no clipping)", group="distributed")
    resume: str = _flag("", "auto: continue the newest version of this setting that holds a resumable state; "
                        "or a checkpoint folder (<checkpoints>/<run>/last)", group="distributed", run_only=True)
    save_every_steps: int = _flag(0, "also save the resumable state every N optimizer steps (0: each epoch)",
                                  group="distributed", minimum=0, run_only=True)

    # --- speed ---
    compile: bool = _flag(False, "torch.compile the model (warm-up compiles; the repeated blocks regionally)",
                          group="speed", run_only=True)
    compile_mode: str = _flag("default", "torch.compile mode", ["default", "reduce-overhead", "max-autotune"],
                              "speed", run_only=True)

    # --- wavelets (seed-system options) ---
    use_swt: bool = _flag(False, "stationary wavelet transform of each window into level+1 bands before patching",
                          group="wavelets")
    swt_wavelet: str = _flag("db4", "SWT wavelet", ["db4", "db6", "sym4", "coif2", "haar"], "wavelets")
    swt_level: int = _flag(3, "SWT decomposition level", group="wavelets", minimum=1)
    use_all_coeffs: bool = _flag(False, "SWT: keep every level's approximation too, not only the last",
                                 group="wavelets")
    use_dwt_prompt: bool = _flag(False, "add discrete-wavelet statistics of the window to the prompt",
                                 group="wavelets")
    dwt_prompt_level: int = _flag(3, "DWT levels for the prompt statistics", group="wavelets", minimum=1)
    prompt_compression: str = _flag("balanced", "how much DWT detail the prompt carries",
                                    ["minimal", "balanced", "detailed"], "wavelets")

    # --- outputs ---
    checkpoints: str = _flag("./checkpoints", "folder for checkpoints (trainable parameters only)",
                             group="outputs", run_only=True)
    output_dir: str = _flag("./results", "folder for results.json and result_long_term_forecast.txt",
                            group="outputs", run_only=True)
    log_with: str = _flag("none", "experiment tracker through Accelerate (engine/report/tracking.py)",
                          ["none", *TRACKER_NAMES], "outputs", run_only=True)
    log_every_steps: int = _flag(0, "also log the running train loss to --log_with every N optimizer steps (0: once "
                                    "per epoch)", group="outputs", minimum=0, run_only=True)
    plot_windows: int = _flag(4, "test windows drawn in the forecast plot beside results.json (0: no plot)",
                              group="outputs", minimum=0, run_only=True)
    max_bad_steps: int = _flag(10, "stop cleanly after this many non-finite losses (each such step is skipped)",
                               group="outputs", minimum=1, run_only=True)

    # ----------------------------------------------------------------------------------
    def validate(self) -> Config:
        """Reject values no run could use; each message names the flag."""
        self._apply_task_shape()
        for f in dataclasses.fields(self):
            minimum, value = f.metadata["minimum"], getattr(self, f.name)
            if minimum is not None and value < minimum:
                wanted = "a positive integer" if minimum == 1 else f">= {minimum}"
                raise UserError(f"--{f.name} must be {wanted}, got {value}")
        if self.recipe == "reference" and self.lradj not in REFERENCE_SCHEDULES:
            raise UserError(f"--lradj {self.lradj} does not exist in the reference code; with --recipe reference use "
                            f"one of {', '.join(REFERENCE_SCHEDULES)}")
        self.levels = tuple(sorted(set(self.levels)))
        if any(not 0 < level < 100 for level in self.levels):
            raise UserError(f"--levels {' '.join(map(str, self.levels))}: give interval levels in percent, between 1 "
                            "and 99 (e.g. --levels 80 95)")
        if self.levels and self.is_short_term:
            raise UserError("--levels: prediction intervals are for long-term forecasting runs, not M4")
        if self.max_grad_norm < 0:
            raise UserError(f"--max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if not 1 <= self.percent <= 100:
            raise UserError(f"--percent must be between 1 and 100, got {self.percent}")
        if self.patch_len > self.seq_len:
            raise UserError(f"--patch_len {self.patch_len} is longer than --seq_len {self.seq_len}; "
                            f"use a patch length of at most {self.seq_len}")
        for name in ["learning_rate", "dropout", "pct_start", "max_grad_norm", "lr_gamma", "weight_decay"]:
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"--{name} must be a finite number, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise UserError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.pct_start < 1.0:
            raise UserError(f"--pct_start must be in (0, 1), got {self.pct_start}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise UserError(f"--lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if self.weight_decay < 0:
            raise UserError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if self.use_swt and self.seq_len % 2 ** self.swt_level:
            raise UserError(f"--use_swt: --seq_len {self.seq_len} must be divisible by 2**--swt_level "
                            f"({2 ** self.swt_level}); lower --swt_level or change --seq_len")
        if self.use_dwt_prompt and 2 ** self.dwt_prompt_level > self.seq_len:
            raise UserError(f"--use_dwt_prompt: 2**--dwt_prompt_level ({2 ** self.dwt_prompt_level}) exceeds "
                            f"--seq_len {self.seq_len}; lower --dwt_prompt_level")
        return self

    def _apply_task_shape(self) -> None:
        """M4 fixes the window as the benchmark does: pred_len = the pattern's horizon, seq_len = 2 x horizon."""
        short_term = self.is_short_term
        if short_term != (self.data == "m4"):
            raise UserError("--task_name short_term_forecast goes with --data m4 (and --data m4 with "
                            f"short_term_forecast); got --task_name {self.task_name} --data {self.data}")
        if short_term:
            self.pred_len = PATTERNS[self.seasonal_patterns].horizon
            self.seq_len = 2 * self.pred_len

    @property
    def is_short_term(self) -> bool:
        """M4's short-term task: its own windows, metrics (sMAPE, MASE, OWA) and benchmark (Naive2)."""
        return self.task_name == SHORT_TERM

    @property
    def selection_metric(self) -> str:
        """The validation score early stopping and the best checkpoint follow: sMAPE on M4 (raw scales differ by
        orders of magnitude between series), MSE otherwise."""
        return "smape" if self.is_short_term else "mse"

    @property
    def setting(self) -> str:
        """Run name shared by checkpoints/ and results/; holds lr and batch so sweeps don't collide."""
        data = f"{self.data_pretrain}_{self.data}" if self.data_pretrain else self.data
        if self.data == "m4":
            data = f"m4_{self.seasonal_patterns}"
        if self.data in ("custom", "long") and self.data_path:  # runs on different files keep apart
            data = Path(self.data_path).stem
        model_id = self.model_id or f"{data}_{self.seq_len}_{self.pred_len}"
        llm = self.llm_model.replace("/", "-")
        llm = "noLLM" if llm.lower() == "none" else f"{llm}{self.llm_layers}"
        if self.llm_init == "random":  # the random-LLM ablation must not overwrite the pretrained run
            llm += "rand"
        return (f"{self.task_name}_{model_id}_{self.model}_{self.data}_ft{self.features}_sl{self.seq_len}"
                f"_ll0_pl{self.pred_len}_dm{self.d_model}_nh{self.n_heads}_df{self.d_ff}"
                f"_{llm}_lr{self.learning_rate:g}_bs{self.batch_size}"
                f"{f'_pct{self.percent}' if self.percent < 100 else ''}{self.wavelet_tag}_{self.des}")

    @property
    def wavelet_tag(self) -> str:
        """Setting-name part of the wavelet options, so runs with and without them keep apart."""
        swt = f"_swt{self.swt_wavelet}L{self.swt_level}{'all' if self.use_all_coeffs else ''}" if self.use_swt else ""
        dwt = f"_dwt{self.swt_wavelet}L{self.dwt_prompt_level}{self.prompt_compression}" if self.use_dwt_prompt else ""
        return swt + dwt

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_options(self) -> DataOptions:
        """The flags the data layer reads."""
        names = {f.name for f in dataclasses.fields(DataOptions)}
        return DataOptions(**{k: v for k, v in self.to_dict().items() if k in names})


RUN_ONLY = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata["run_only"])

# Flags of the reference Time-LLM and Time-Series-Library scripts that Time-LLM has no use for (decoder, encoder
# and embedding settings of other models, time-feature frequency, the reference's alignment epochs). They are
# accepted and ignored, so those scripts run unchanged; they are not part of a run's configuration.
IGNORED_FLAGS = {"dec_in": int, "c_out": int, "e_layers": int, "d_layers": int, "factor": int, "moving_avg": int,
                 "embed": str, "activation": str, "align_epochs": int, "freq": str}


class _Given(argparse.Action):
    """Stores a flag's value and records that the command line gave it: recipes fill only the other flags."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else
                tuple(values) if isinstance(values, list) else values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def build_parser(description: str) -> argparse.ArgumentParser:
    """One argparse flag per Config field, grouped as in the README."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Config):
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        if f.type == "bool":
            group.add_argument(f"--{f.name}", action=_Given, nargs=0, const=True, default=False, help=meta["help"])
            continue
        if f.type == "tuple[int, ...]":
            group.add_argument(f"--{f.name}", action=_Given, type=int, nargs="*", default=f.default,
                               help=meta["help"])
            continue
        kind = {"int": int, "float": float, "str": str}[f.type]
        group.add_argument(f"--{f.name}", action=_Given, type=kind, default=f.default, choices=meta["choices"],
                           help=meta["help"])
    ignored = parser.add_argument_group("ignored", "accepted so the reference Time-LLM and Time-Series-Library "
                                        "scripts run unchanged; Time-LLM has no use for them")
    for name, kind in IGNORED_FLAGS.items():
        ignored.add_argument(f"--{name}", type=kind, default=argparse.SUPPRESS, help="ignored")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated Config of parsed flags; the --recipe sets the flags the command line left out."""
    names = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in vars(args).items() if k in names})
    given = getattr(args, "given", set())
    for name, value in flag_defaults(cfg, given).items():
        if name not in given:
            setattr(cfg, name, value)
    return cfg.validate()
