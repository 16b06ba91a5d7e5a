"""A faithful re-implementation of the reference Time-LLM training hot path, for side-by-side timing.

What it keeps from the reference (KimMeen/Time-LLM, models/TimeLLM.py and run_main.py), because these are
what make it slow: statistics pulled to the host with `.tolist()` in a per-sample Python loop, the prompt
text formatted with full float reprs and tokenized inside `forward` (padded to the longest in the batch),
an eager-attention backbone that returns every attention map and hidden state, the backbone's own dropout,
the vocabulary -> prototype mapping recomputed in every forward (eval too), einsum/softmax reprogramming,
and an Adam that is not fused. Under DeepSpeed bf16/fp16 (the reference always runs through DeepSpeed) the
whole module, trainable parts included, is held in half precision while the optimizer updates an fp32
master copy (one flat partition with one process, as ZeRO-2 keeps it); in fp32 the frozen weights stay fp32.

The weights are copied from the project's TimeLLM, so both paths start from identical parameters.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from timellm_launcher.models.time_llm import TimeLLM

REFERENCE_DROPOUT = 0.1  # GPT-2's resid/embd/attn dropout, left on by the reference


def eager_backbone(llm: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """The same frozen weights in an eager-attention model that returns attention maps and hidden states."""
    config = copy.deepcopy(llm.config)
    config._attn_implementation = "eager"
    if config.model_type == "gpt2":
        config.activation_function = "gelu_new"  # GPT-2's own config: GELU as separate elementwise ops
    config.output_attentions = True
    config.output_hidden_states = True
    for key, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, REFERENCE_DROPOUT)
    model = AutoModel.from_config(config, attn_implementation="eager")
    model.load_state_dict(llm.state_dict())
    model.requires_grad_(False)
    return model.to(device=llm.device, dtype=dtype)


class ReferencePrompt:
    """The reference's per-sample prompt: host statistics, a text per sample, the tokenizer in forward."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, description: str, seq_len: int, pred_len: int,
                 top_k: int = 5) -> None:
        self.tokenizer = copy.copy(tokenizer)
        self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.pad_token
        self.description, self.seq_len, self.pred_len, self.top_k = description, seq_len, pred_len, top_k

    def lags(self, x: torch.Tensor) -> torch.Tensor:
        """Top-k circular autocorrelation lags (lag 0 included, as the reference ranks them)."""
        spectrum = torch.fft.rfft(x, dim=-1)
        corr = torch.fft.irfft(spectrum * torch.conj(spectrum), dim=-1)
        return torch.topk(corr, self.top_k, dim=-1).indices

    def texts(self, x: torch.Tensor) -> list[str]:
        """x [B, L] normalised windows -> one prompt string per row, built on the host."""
        lows, highs = torch.min(x, dim=1).values, torch.max(x, dim=1).values
        medians = torch.median(x, dim=1).values
        lags = self.lags(x)
        trends = x.diff(dim=1).sum(dim=1)
        texts = []
        for b in range(x.shape[0]):  # five host syncs per sample, as in the reference
            texts.append(
                f"<|start_prompt|>Dataset description: {self.description}"
                f"Task description: forecast the next {self.pred_len} steps given the previous {self.seq_len} "
                f"steps information; Input statistics: min value {lows[b].tolist()}, max value "
                f"{highs[b].tolist()}, median value {medians[b].tolist()}, the trend of input is "
                f"{'upward' if trends[b] > 0 else 'downward'}, top 5 lags are : {lags[b].tolist()}"
                "<|<end_prompt>|>")
        return texts

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.tokenizer(self.texts(x), return_tensors="pt", padding=True, truncation=True,
                                 max_length=2048)
        return encoded.input_ids.to(x.device)


class ReferenceReprogramming(nn.Module):
    """Cross-attention written out with einsum and an explicit softmax (attention dropout included)."""

    def __init__(self, source: nn.Module, dropout: float) -> None:
        super().__init__()
        self.n_heads = source.n_heads
        self.query, self.key = copy.deepcopy(source.query), copy.deepcopy(source.key)
        self.value, self.out = copy.deepcopy(source.value), copy.deepcopy(source.out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, patches: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        b, p, _ = patches.shape
        s, h = prototypes.shape[0], self.n_heads
        q = self.query(patches).view(b, p, h, -1)
        k = self.key(prototypes).view(s, h, -1)
        v = self.value(prototypes).view(s, h, -1)
        scores = torch.einsum("blhe,she->bhls", q, k)
        weights = self.dropout(torch.softmax(scores / math.sqrt(q.shape[-1]), dim=-1))
        return self.out(torch.einsum("bhls,she->blhe", weights, v).reshape(b, p, -1))


class ReferenceTimeLLM(nn.Module):
    """The reference forward over a copy of a project TimeLLM's weights, held entirely in `dtype`
    (bf16/fp16: DeepSpeed casts the whole module; fp32: as loaded)."""

    def __init__(self, optimised: TimeLLM, tokenizer: PreTrainedTokenizerBase, description: str, *,
                 seq_len: int, pred_len: int, dropout: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype, self.pred_len, self.d_ff = dtype, pred_len, optimised.d_ff
        self.num_patches = optimised.num_patches
        self.llm = eager_backbone(optimised.llm, dtype)
        self.prompt = ReferencePrompt(tokenizer, description, seq_len, pred_len)
        self.patch_embedding = copy.deepcopy(optimised.patch_embedding)
        self.patch_embedding.dropout = nn.Dropout(dropout)
        self.mapping = copy.deepcopy(optimised.mapping)
        self.reprogramming = ReferenceReprogramming(optimised.reprogramming, dropout)
        self.head = copy.deepcopy(optimised.head)
        self.head.dropout = nn.Dropout(dropout)
        self.normalizer = copy.deepcopy(optimised.normalizer)
        for module in (self.patch_embedding, self.mapping, self.reprogramming, self.head):
            module.to(dtype=dtype)

    def forward(self, x: torch.Tensor, prompt_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, N] -> [B, pred_len, N]. `prompt_ids` replaces the tokenized prompt (for equivalence tests)."""
        b, seq_len, n_vars = x.shape
        x, mean, std = self.normalizer.normalize(x.float())
        series = x.permute(0, 2, 1).reshape(b * n_vars, seq_len)
        ids = self.prompt(series) if prompt_ids is None else prompt_ids
        prompt_embeds = self.llm.get_input_embeddings()(ids)
        words = self.llm.get_input_embeddings().weight
        prototypes = self.mapping(words.permute(1, 0)).permute(1, 0)  # recomputed every call, eval too
        patches = self.patch_embedding(series.to(self.dtype))
        patches = self.reprogramming(patches, prototypes)
        inputs = torch.cat([prompt_embeds, patches], dim=1)
        output = self.llm(inputs_embeds=inputs)  # attention maps and all hidden states come back too
        hidden = output.last_hidden_state[:, :, :self.d_ff]
        hidden = hidden.reshape(b, n_vars, hidden.shape[1], self.d_ff).permute(0, 1, 3, 2)
        forecast = self.head(hidden[..., -self.num_patches:]).permute(0, 2, 1)
        return self.normalizer.denormalize(forecast, mean, std)


class MasterWeightAdam:
    """Adam as the reference runs it under DeepSpeed ZeRO-2 with one process: gradients copied into one
    flat fp32 buffer, torch's single-tensor (not fused, not foreach) Adam on a flat fp32 master copy, the
    result copied back into the (possibly half-precision) parameters."""

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        self.params = params
        self.master = nn.Parameter(torch.cat([p.detach().float().flatten() for p in params]))
        self.master.grad = torch.zeros_like(self.master)
        self.optimizer = torch.optim.Adam([self.master], lr=lr, foreach=False, fused=False)

    def step(self) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            self.master.grad[offset:offset + n].copy_(p.grad.flatten())
            offset += n
        self.optimizer.step()
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                p.copy_(self.master[offset:offset + n].view_as(p))
                offset += n

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class ReferenceTrainer:
    """One reference training step: forward, MSE, `loss.item()` for the running log, backward, Adam."""

    def __init__(self, model: ReferenceTimeLLM, lr: float) -> None:
        self.model = model
        self.optimizer = MasterWeightAdam([p for p in model.parameters() if p.requires_grad], lr)

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        self.model.train()
        self.optimizer.zero_grad()
        x, y = batch["x"].float(), batch["y"].float()
        out = self.model(x)[..., -y.shape[-1]:]
        loss = F.mse_loss(out.float(), y)
        value = loss.item()  # the reference appends loss.item() to its log every step
        loss.backward()
        self.optimizer.step()
        return value
