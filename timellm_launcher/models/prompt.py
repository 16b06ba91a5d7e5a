"""The statistics prompt of Time-LLM, as token ids built on the device without the tokenizer.

The reference formats each window's statistics into a string and calls the tokenizer inside
`forward`, one Python iteration and five host syncs per sample. Here the prompt text is a template
of fixed pieces and slots (min, max, median, trend, top-k lags). Every value a slot can take is
tokenized once, at construction, into a table; `forward` computes the statistics with tensor ops
and gathers the ids from the tables. The ids equal `tokenizer(text)` of the text `text_for` gives:
the same template with values rounded to `decimals` places (the reference prints full float
reprs, ~10 tokens per number, and pads every prompt in the batch to the longest). Composition is
checked against the tokenizer when the builder is made. The first piece (the description) is the same
in every prompt, so a causal backbone computes it once (models/time_llm.py).

Differences from the reference prompt, on purpose: lags are searched in 1..seq_len//2 (the
reference's circular autocorrelation always ranks lag 0 first and mirrors lag k at seq_len-k);
prompts are padded with an attention mask (after the description, before the statistics), so a
sample's forecast does not depend on what else is in its batch.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from timellm_launcher.core.errors import UserError

_ANCHOR = "x"  # tokenized in front of every non-first piece so it sees mid-text context


class StatisticsPrompt(nn.Module):
    def __init__(self, tokenizer: PreTrainedTokenizerBase, description: str, seq_len: int, pred_len: int,
                 top_k: int = 5, decimals: int = 2, extension: nn.Module | None = None, style: str = "default") -> None:
        """`extension` (e.g. models/dwt_prompt.py) appends its own fixed pieces and slots after the base
        prompt: `extension.pieces()` gives them, `extension.slot_values(x)` their table choices. `style` "reference"
        words the prompt as the reference Time-LLM does (start/end markers, "steps information;", lags as
        ": [a, b, ...]")."""
        super().__init__()
        self.extension = extension
        self.seq_len, self.decimals = seq_len, decimals
        self.top_k = min(top_k, seq_len // 2)
        # |z| of a RevIN-normalised window is at most sqrt(seq_len - 1)
        self.max_abs = math.ceil(math.sqrt(seq_len) * 10 ** decimals)
        self.pieces: list[tuple[str, list[str]]] = []  # (kind, texts); kind "fixed" has one text
        reference = style == "reference"
        if reference:
            self._fixed(f"<|start_prompt|>Dataset description: {description.strip()}Task description: forecast the "
                        f"next {pred_len} steps given the previous {seq_len} steps information; Input statistics: "
                        "min value")
        else:
            self._fixed(f"Dataset description: {description.strip()} Task description: forecast the next "
                        f"{pred_len} steps given the previous {seq_len} steps; Input statistics: min value")
        self._slot("number")
        self._fixed(", max value")
        self._slot("number")
        self._fixed(", median value")
        self._slot("number")
        self._fixed(", the trend of input is")
        self._slot("trend")
        self._fixed(f", top {self.top_k} lags are{' : [' if reference else ''}")
        for i in range(self.top_k):
            if i:
                self._fixed(",")
            self._slot("lag0" if reference and i == 0 else "lag")
        self._fixed("]<|<end_prompt>|>" if reference else ".")
        if extension is not None:
            for kind, texts in extension.pieces():
                if kind == "fixed":
                    self._fixed(texts[0])
                else:
                    self.pieces.append((kind, texts))
        self._build_tables(tokenizer)
        self._verify(tokenizer)

    # ------------------------------------------------------------------ construction
    def _fixed(self, text: str) -> None:
        if self.pieces and self.pieces[-1][0] == "fixed":  # one piece, so punctuation such as ");" tokenizes whole
            self.pieces[-1] = ("fixed", [self.pieces[-1][1][0] + text])
        else:
            self.pieces.append(("fixed", [text]))

    def _slot(self, kind: str) -> None:
        if kind == "number":
            texts = [" " + self._format(k) for k in range(-self.max_abs, self.max_abs + 1)]
        elif kind == "trend":
            texts = [" downward", " upward"]
        else:  # "lag0": the reference's first lag, right after "["
            space = "" if kind == "lag0" else " "
            texts = [f"{space}{lag}" for lag in range(1, self.seq_len // 2 + 1)]
        self.pieces.append((kind, texts))

    def _format(self, k: int) -> str:
        return f"{k / 10 ** self.decimals:.{self.decimals}f}"

    def _build_tables(self, tokenizer: PreTrainedTokenizerBase) -> None:
        probe_full = tokenizer(_ANCHOR)["input_ids"]
        anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(probe_full)) if probe_full[i:i + len(anchor)] == anchor)
        prefix, suffix = probe_full[:at], probe_full[at + len(anchor):]

        rows: list[list[int]] = []
        self.offsets: list[int] = []
        self.max_lengths: list[int] = []
        cache: dict[str, tuple[int, int]] = {}  # slot kinds share one table
        for i, (kind, texts) in enumerate(self.pieces):
            key = kind.split("#")[0] if kind != "fixed" else f"fixed{i}"  # "table#column" kinds share a table
            if key not in cache:
                first = i == 0
                # a piece that starts mid-word is anchored on the character before it instead
                context = _ANCHOR if first or all(t[:1].isspace() or kind == "fixed" for t in texts) \
                    else self.pieces[i - 1][1][0][-1]
                anchor = tokenizer(context, add_special_tokens=False)["input_ids"]
                encoded = tokenizer(texts if first else [context + t for t in texts],
                                    add_special_tokens=False)["input_ids"]
                if not first:
                    if any(ids[:len(anchor)] != anchor for ids in encoded):
                        raise UserError("this tokenizer merges tokens across prompt pieces; the statistics "
                                        "prompt cannot be assembled from tables for it")
                    encoded = [ids[len(anchor):] for ids in encoded]
                if first:
                    encoded = [prefix + ids for ids in encoded]
                cache[key] = (len(rows), max(len(ids) for ids in encoded))
                rows.extend(encoded)
            offset, longest = cache[key]
            self.offsets.append(offset)
            self.max_lengths.append(longest)
        if suffix:
            self.offsets.append(len(rows))
            self.max_lengths.append(len(suffix))
            self.pieces.append(("fixed", [""]))
            rows.append(suffix)

        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        table = torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows], dtype=torch.long)
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("row_lengths", torch.tensor([len(r) for r in rows]), persistent=False)
        self.register_buffer("slot_offsets", torch.tensor(self.offsets[1:]), persistent=False)  # after the head
        self.length = sum(self.max_lengths)  # static prompt length (left-padded to it)

    def _verify(self, tokenizer: PreTrainedTokenizerBase, trials: int = 48) -> None:
        rng = random.Random(0)
        slots = []
        for t in range(trials):
            row = []
            for kind, texts in self.pieces:
                if kind == "fixed":
                    row.append(0)
                else:  # extremes first, then random values
                    row.append([0, len(texts) - 1][t] if t < 2 else rng.randrange(len(texts)))
            slots.append(row)
        ids, mask = self._assemble(torch.tensor(slots))
        for row, got, valid in zip(slots, ids, mask, strict=False):
            expected = tokenizer(self.text_for(row))["input_ids"]
            if got[valid].tolist() != expected:
                raise UserError("this tokenizer does not compose the statistics prompt piece by piece; "
                                f"text {self.text_for(row)!r} differs from its table assembly")

    # ------------------------------------------------------------------ use
    def text_for(self, slot_row: list[int]) -> str:
        """The prompt text whose tokenization the ids of this slot row equal."""
        return "".join(texts[i] for (_, texts), i in zip(self.pieces, slot_row, strict=True))

    def slot_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Per-piece table choices [B, pieces] from normalised windows x [B, L] (float32, on device)."""
        scale = 10 ** self.decimals

        def number(v: torch.Tensor) -> torch.Tensor:
            return torch.round(v * scale).clamp(-self.max_abs, self.max_abs).long() + self.max_abs

        values = {"min": number(x.amin(dim=1)), "max": number(x.amax(dim=1)),
                  "median": number(x.median(dim=1).values)}
        trend = (x[:, -1] - x[:, 0] > 0).long()  # the reference's sum of first differences
        spectrum = torch.fft.rfft(x, dim=1)
        autocorr = torch.fft.irfft(spectrum * spectrum.conj(), n=x.shape[1], dim=1)
        lags = torch.topk(autocorr[:, 1:self.seq_len // 2 + 1], self.top_k, dim=1).indices  # lag - 1

        extra = self.extension.slot_values(x) if self.extension is not None else {}
        numbers = iter(("min", "max", "median"))
        lag_column = iter(range(self.top_k))
        zero = torch.zeros_like(trend)
        columns = []
        for kind, _ in self.pieces:
            if kind in extra:
                columns.append(extra[kind])
            elif kind == "fixed":
                columns.append(zero)
            elif kind == "number":
                columns.append(values[next(numbers)])
            elif kind == "trend":
                columns.append(trend)
            else:
                columns.append(lags[:, next(lag_column)])
        return torch.stack(columns, dim=1)

    @property
    def head_length(self) -> int:
        """Tokens of the first fixed piece (the dataset and task description): the same ids in every prompt."""
        return self.max_lengths[0]

    def head_ids(self) -> torch.Tensor:
        return self.table[self.offsets[0], :self.head_length]

    def _assemble(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[head ; padding ; the rest in order]: the padding sits after the head, so the head keeps the same positions
        in every row (position ids count valid tokens only, and padding is masked out)."""
        rows = slots[:, 1:].to(self.table.device) + self.slot_offsets  # no host-to-device copy per forward
        ids = self.table[rows]  # [B, pieces - 1, width]
        valid = torch.arange(ids.shape[-1], device=ids.device) < self.row_lengths[rows].unsqueeze(-1)
        ids, valid = ids.flatten(1), valid.flatten(1)
        # padding first, tokens after in their order (a stable sort on the validity flag)
        order = torch.sort(valid.to(torch.int8), dim=1, stable=True).indices
        rest = self.length - self.head_length
        ids, valid = ids.gather(1, order)[:, -rest:], valid.gather(1, order)[:, -rest:]
        head = self.head_ids().expand(ids.shape[0], -1)
        return torch.cat([head, ids], dim=1), torch.cat([torch.ones_like(head, dtype=torch.bool), valid], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, length] and attention mask [B, length] for normalised windows x [B, L]."""
        return self._assemble(self.slot_indices(x.float()))
