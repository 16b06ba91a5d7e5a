"""Time-LLM (Jin et al., ICLR 2024): patches reprogrammed onto text prototypes, a frozen LLM, a linear head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache

from timellm_launcher.models.attention import eval_attention
from timellm_launcher.models.backbone import Backbone, is_causal
from timellm_launcher.models.layers import FlattenHead, PatchEmbedding, Reprogramming, RevIN
from timellm_launcher.models.prompt import StatisticsPrompt
from timellm_launcher.models.wavelets import SWT


class PrefixCache(DynamicCache):
    """Keys and values of a prefix shared by the rows of a batch: the prompt head as broadcast views (one copy for
    every row), then what passes add while `frozen` is False. A frozen cache lends the prefix to a pass without
    storing that pass's keys and values, so each layer's copy lives only while the layer runs (evaluation would
    otherwise hold every layer's keys and values of the whole batch until the forward ends)."""

    def __init__(self, config, head: list[tuple[torch.Tensor, torch.Tensor]], rows: int) -> None:
        super().__init__(config=config)
        self.frozen = False
        for layer, (keys, values) in zip(self.layers, head, strict=True):
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.frozen:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        layer = self.layers[layer_idx]
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)


class TimeLLM(nn.Module):
    """forward(x [B, seq_len, N]) -> [B, pred_len, N]; every variable is forecast independently."""

    def __init__(self, backbone: Backbone, *, description: str, seq_len: int, pred_len: int, d_model: int,
                 n_heads: int, d_ff: int, patch_len: int, stride: int, num_tokens: int, dropout: float,
                 swt: SWT | None = None, prompt_extension: nn.Module | None = None, use_llm: bool = True,
                 prompt_style: str = "default") -> None:
        """`swt`: patch the window's wavelet bands instead of the window; `prompt_extension`: extra prompt slots;
        `use_llm` False: the "w/o LLM" ablation; `prompt_style`: models/prompt.py's wording."""
        super().__init__()
        self.llm = backbone.model
        self.use_llm = use_llm  # False: the "w/o LLM" ablation, reprogrammed patches go straight to the head
        self.causal_llm = is_causal(self.llm)
        self.d_ff = d_ff
        self.pred_len = pred_len
        d_llm, vocab = backbone.hidden_size, backbone.word_embeddings.shape[0]
        if d_ff > d_llm:
            raise ValueError(f"d_ff {d_ff} exceeds the backbone width {d_llm}")
        self.num_patches = PatchEmbedding.count(seq_len, patch_len, stride)

        self.normalizer = RevIN()
        self.prompt = StatisticsPrompt(backbone.tokenizer, description, seq_len, pred_len, extension=prompt_extension,
                                       style=prompt_style)
        self.swt = swt
        self.patch_embedding = PatchEmbedding(d_model, patch_len, stride, dropout, swt.bands if swt else 1)
        self.mapping = nn.Linear(vocab, num_tokens)  # vocabulary -> text prototypes
        self.reprogramming = Reprogramming(d_model, n_heads, d_ff, d_llm, dropout)
        self.head = FlattenHead(d_ff * self.num_patches, pred_len, dropout)
        # Every backbone hands the head normalised hidden states (its last LayerNorm/RMSNorm). The "w/o LLM"
        # ablation keeps that normalisation and drops only the transformer layers: without it the reprogrammed
        # features reach the head at whatever scale training drives them to, and at the scripts' learning rates
        # (0.01) training diverges, which would measure the missing normalisation, not the missing LLM.
        self.ablation_norm = None if use_llm else nn.LayerNorm(d_llm, elementwise_affine=False)
        self._cached_prototypes: torch.Tensor | None = None
        self._head_kv: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor]]] | None = None  # (weights, per layer)

    @property
    def sequence_length(self) -> int:
        """Tokens the LLM sees per sample: the (padded) prompt then the patches."""
        return self.prompt.length + self.num_patches

    def train(self, mode: bool = True) -> TimeLLM:
        self._cached_prototypes = None  # the mapping may change once training resumes
        return super().train(mode)

    def prototypes(self) -> torch.Tensor:
        """[num_tokens, d_llm] = mapping(word embeddings); constant in eval, so computed once there."""
        constant = not self.training and not torch.is_grad_enabled()
        if constant and self._cached_prototypes is not None:
            return self._cached_prototypes
        words = self.llm.get_input_embeddings().weight  # [vocab, d_llm], frozen
        weight, bias = self.mapping.weight, self.mapping.bias
        if not torch.is_autocast_enabled(words.device.type):
            words = words.to(weight.dtype)
        result = torch.addmm(bias.unsqueeze(1), weight, words)
        if constant:
            self._cached_prototypes = result
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, seq_len, n_vars = x.shape
        x, mean, std = self.normalizer.normalize(x.float())
        series = x.permute(0, 2, 1).reshape(b * n_vars, seq_len)  # channel-independent rows

        # inputs follow each module's dtype (DeepSpeed holds the whole module in bf16/fp16, without autocast)
        patch_input = self.swt(series) if self.swt is not None else series
        patches = self.patch_embedding(patch_input.to(self.patch_embedding.conv.weight.dtype))
        patches = self.reprogramming(patches.to(self.reprogramming.query.weight.dtype), self.prototypes())
        hidden = self._run_llm(patches, series) if self.use_llm else self.ablation_norm(patches)

        features = hidden[:, -self.num_patches:, :self.d_ff].to(self.head.linear.weight.dtype)  # [B*N, P, d_ff]
        features = features.reshape(b, n_vars, self.num_patches, self.d_ff).transpose(2, 3)
        forecast = self.head(features).float().permute(0, 2, 1)  # [B, pred_len, N]
        return self.normalizer.denormalize(forecast, mean, std)

    def _run_llm(self, patches: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        """The frozen LLM over [prompt ; reprogrammed patches] -> last hidden states (of the patches, at least)."""
        prompt_ids, prompt_mask = self.prompt(series)
        embed = self.llm.get_input_embeddings()
        rows, prompt_len = prompt_ids.shape
        patches = patches.to(embed.weight.dtype)
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(rows, self.num_patches)], dim=1).long()
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        if not self._uses_cache():
            inputs = torch.cat([embed(prompt_ids), patches], dim=1)
            return self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions).last_hidden_state
        # Causal LLM: a token's keys and values depend only on the tokens before it. The description (the prompt's
        # head) is the same in every row and never changes: its keys and values are computed once and reused. The
        # rest of the prompt depends on no trainable parameter, so when gradients flow it runs without autograd
        # and the backward pass covers the patch tokens only. Same math as one joint pass.
        head = self.prompt.head_length
        cache = PrefixCache(self.llm.config, self._head_keys_values(), rows)
        rest = embed(prompt_ids[:, head:])
        if patches.requires_grad and torch.is_grad_enabled():
            with torch.no_grad(), eval_attention():
                self.llm(inputs_embeds=rest, attention_mask=mask[:, :prompt_len], past_key_values=cache,
                         position_ids=positions[:, head:prompt_len], use_cache=True)
            rest, positions = rest[:, :0], positions[:, prompt_len:]
        else:
            positions = positions[:, head:]
        cache.frozen = True  # the last pass attends to the prefix without storing its own keys and values
        return self.llm(inputs_embeds=torch.cat([rest, patches], dim=1), attention_mask=mask, past_key_values=cache,
                        position_ids=positions, use_cache=True).last_hidden_state

    def _uses_cache(self) -> bool:
        """Not for bidirectional backbones, and not under Hugging Face's activation checkpointing in training,
        which drops the cache argument."""
        return self.causal_llm and not (self.llm.is_activation_checkpointing and self.llm.training)

    def _head_keys_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The head's keys and values per layer, computed without autograd; computed again when the frozen weights
        are moved, cast or loaded in place (the word embeddings stand for them all)."""
        embed = self.llm.get_input_embeddings()
        words = embed.weight
        key = (words.device, words.dtype, words.data_ptr(), words._version)
        if self._head_kv is None or self._head_kv[0] != key:
            ids = self.prompt.head_ids().to(words.device).unsqueeze(0)
            with torch.no_grad(), eval_attention():
                out = self.llm(inputs_embeds=embed(ids), use_cache=True,
                               position_ids=torch.arange(ids.shape[1], device=ids.device).unsqueeze(0))
            self._head_kv = (key, [(layer.keys, layer.values) for layer in out.past_key_values.layers])
        return self._head_kv[1]
