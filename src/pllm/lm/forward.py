"""How the trainer runs the model: frozen lower layers once per example, trainable upper layers every step, and the
output layer only where the loss is taken.

LoRA sits on the top `LoraSettings.layers` decoder layers. Below them the network is frozen and sees no adapter, so
an example's hidden state entering the first trained layer never changes during a run: `LayerSplit.lower` computes
it once, without autograd, and every epoch reuses it. Above, `LayerSplit.target_logprobs` runs the trainable layers,
then the 49k-wide output layer only at the positions whose next token is a target: on a chat prompt most positions
are prompt, and the naive loop spends a fifth of its forward FLOPs on their logits only to ignore their loss.

Rows are right-padded, and attention is causal, so a real token never attends to the pads after it: no attention
mask is needed, and SDPA takes its fused causal kernel (no T x T matrices kept for the backward pass).

Supported: llama-family decoders whose model has `embed_tokens`, `layers`, `norm`, `rotary_emb` (Llama, SmolLM,
Qwen2/3, Mistral). Others are refused with a clear error rather than trained wrongly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pllm.errors import ModelLoadError

Row = tuple[list[int], list[int]]  # token ids, and labels with -100 on the prompt


def decoder_stack(model: Any) -> tuple[Any, Any]:
    """(causal LM, its transformers decoder) under a (PEFT-wrapped) model, checked to be one we can split."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        kind = getattr(getattr(base, "config", None), "model_type", type(base).__name__)
        raise ModelLoadError(f"the trainer supports llama-family decoders (llama, qwen2, qwen3, mistral), not {kind}")
    return base, inner


def micro_batches(lengths: Sequence[int], budget: int) -> Iterator[list[int]]:
    """Indices (longest first) grouped so that rows x longest row stays within `budget` tokens (at least one row).

    Bounds activation memory whatever the item length: a batch of eight 256-token items runs as a few smaller ones,
    with the same gradient (the loss is summed, then divided by the whole batch's target count).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    group: list[int] = []
    for i in order:
        if group and (len(group) + 1) * lengths[group[0]] > budget:
            yield group
            group = []
        group.append(i)
    if group:
        yield group


class LayerSplit:
    """A causal LM seen as frozen lower layers (their output cached per example) and trainable upper layers."""

    def __init__(self, model: Any, first_trained: int):
        base, inner = decoder_stack(model)
        self.embed, self.layers, self.norm, self.rotary = inner.embed_tokens, inner.layers, inner.norm, inner.rotary_emb
        self.head = base.lm_head
        if not 0 <= first_trained <= len(self.layers):
            raise ValueError(f"first trained layer {first_trained} outside 0..{len(self.layers)}")
        self.first = first_trained

    def _run(self, hidden: Any, layers: Any) -> Any:
        import torch

        positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        rope = self.rotary(hidden, positions)
        for layer in layers:
            out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rope)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, rows: Sequence[list[int]], budget: int = 4096) -> list[Any]:
        """Hidden states entering the first trained layer, one [len, hidden] tensor per row (no autograd).

        Repeated rows (a fact asked three times, replayed chat) are computed once and share their tensor.
        """
        import torch

        distinct = list(dict.fromkeys(tuple(r) for r in rows))
        states: list[Any] = [None] * len(distinct)
        with torch.no_grad():
            for group in micro_batches([len(r) for r in distinct], budget):
                width = len(distinct[group[0]])
                ids = torch.zeros((len(group), width), dtype=torch.long)
                for n, i in enumerate(group):
                    ids[n, : len(distinct[i])] = torch.tensor(distinct[i])
                hidden = self._run(self.embed(ids), self.layers[: self.first])
                for n, i in enumerate(group):
                    states[i] = hidden[n, : len(distinct[i])].clone()
        index = {row: i for i, row in enumerate(distinct)}
        return [states[index[tuple(r)]] for r in rows]

    def target_logprobs(self, hidden: Sequence[Any], labels: Sequence[list[int]]) -> Any:
        """Sum of target-token log-probabilities per row, from cached lower states (autograd as the caller has it)."""
        import torch
        import torch.nn.functional as F

        width = max(h.shape[0] for h in hidden)
        x = hidden[0].new_zeros((len(hidden), width, hidden[0].shape[-1]))
        for n, h in enumerate(hidden):
            x[n, : h.shape[0]] = h
        x = self.norm(self._run(x, self.layers[self.first:]))
        # Position p predicts token p + 1: keep the positions whose next token is a target.
        rows, cols, targets = [], [], []
        for n, lab in enumerate(labels):
            for p in range(len(lab) - 1):
                if lab[p + 1] != -100:
                    rows.append(n)
                    cols.append(p)
                    targets.append(lab[p + 1])
        row_index = torch.tensor(rows, dtype=torch.long)
        logits = self.head(x[row_index, torch.tensor(cols, dtype=torch.long)]).float()
        picked = -F.cross_entropy(logits, torch.tensor(targets, dtype=torch.long), reduction="none")
        return torch.zeros(len(hidden), dtype=picked.dtype).index_add(0, row_index, picked)


def count_targets(labels: Sequence[int]) -> int:
    """Tokens whose log-probability counts: targets after the first position."""
    return sum(1 for x in labels[1:] if x != -100)


def layer_weights(split: LayerSplit) -> tuple[list[int], int]:
    """Frozen weights per decoder layer (matmul parameters) and the output layer's, for FLOP estimates."""
    per_layer = [sum(p.numel() for name, p in layer.named_parameters() if p.dim() == 2 and "lora_" not in name)
                 for layer in split.layers]
    return per_layer, split.head.weight.numel()
