"""The evaluation engine's own attention functions, plugged into transformers' AttentionInterface.

Segment attention (`SEGMENTS`), for scoring: many short documents are cheapest to score when their
tokens lie end to end in one row (the linear layers, most of the arithmetic, then run on one tall
matrix with no padding). A padded batch with a 4D block mask instead makes every layer materialise
and mask a full [rows, heads, width, width] score tensor and keeps SDPA off its fused kernel. Here
each *segment* (a run of consecutive query tokens) attends to a short list of key spans: an optional
cached prefix shared by all documents (MMLU's description line), the spans it reads in full (the
document's context, for a choice's continuation), and finally itself, causally: one fused SDPA call
per segment and layer. Each forward passes `segment_plan=SegmentPlan(...)` as a keyword argument,
which transformers hands through to every attention layer.

Grouped attention (`GROUPED`), for decoding: SDPA reading grouped key/value heads in place. With
several query positions per row (a decoding step that verifies drafted tokens) transformers' SDPA
path copies the keys and values of the whole cache once per query head group and layer; on a small
model with 1k-token prompts that copy costs more than the rest of the step.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tunescope.core.modelinfo import routes_attention_through_interface, text_config

SEGMENTS = "tunescope_segments"
GROUPED = "tunescope_grouped"


@dataclass
class Segment:
    start: int  # first query token in the flat row
    end: int  # one past the last
    reads: list[tuple[int, int]] = field(default_factory=list)  # earlier spans of the row seen in full


@dataclass
class SegmentPlan:
    segments: list[Segment]
    # Per layer (keys, values) of the shared prefix, [1, kv_heads, prefix_len, head_dim]; every
    # segment sees it, in front of everything else.
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    _masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def mask(self, q_len: int, k_len: int, device) -> torch.Tensor:
        """Causal mask aligned to the bottom right: query i sees keys 0 .. k_len - q_len + i."""
        key = (q_len, k_len)
        if key not in self._masks:
            self._masks[key] = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        return self._masks[key]


def _segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                       segment_plan=None, **kwargs):
    """query [1, heads, N, dim], key/value [1, kv_heads, N, dim]; attention_mask is ignored."""
    if segment_plan is None:
        raise RuntimeError(f"attention '{SEGMENTS}' needs segment_plan= in the forward call")
    layer = getattr(module, "layer_idx", None)
    if not isinstance(layer, int):
        # Each layer reads its own slice of the shared prefix; a default would hand every layer layer 0's.
        raise RuntimeError(f"attention '{SEGMENTS}' needs the attention module's layer_idx; "
                           f"{type(module).__name__} has none")
    out = torch.empty_like(query)
    prefix = segment_plan.prefix_kv[layer] if segment_plan.prefix_kv else None
    for seg in segment_plan.segments:
        keys, values = [], []
        if prefix is not None:
            keys.append(prefix[0])
            values.append(prefix[1])
        for a, b in seg.reads:
            keys.append(key[:, :, a:b])
            values.append(value[:, :, a:b])
        keys.append(key[:, :, seg.start : seg.end])
        values.append(value[:, :, seg.start : seg.end])
        k = keys[0] if len(keys) == 1 else torch.cat(keys, dim=2)
        v = values[0] if len(values) == 1 else torch.cat(values, dim=2)
        q = query[:, :, seg.start : seg.end]
        q_len, k_len = q.shape[2], k.shape[2]
        mask = None if q_len == k_len else segment_plan.mask(q_len, k_len, q.device)
        out[:, :, seg.start : seg.end] = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=scaling, enable_gqa=True
        )
    return out.transpose(1, 2).contiguous(), None


def _grouped_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """query [rows, heads, q_len, dim], key/value [rows, kv_heads, k_len, dim]."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if attention_mask is None or query.shape[2] == 1 or query.shape[1] == key.shape[1]:
        # transformers' SDPA already reads grouped heads in place here (no mask, or one query per row).
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, dropout=dropout,
                                               scaling=scaling, **kwargs)
    # Several queries per row under a mask: the case transformers handles by copying the heads.
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                         enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    # Visibility is decided per segment inside the attention function; no 4D mask is built.
    return None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SEGMENTS, _segment_attention)
    AttentionMaskInterface.register(SEGMENTS, _no_mask)
    AttentionInterface.register(GROUPED, _grouped_attention)
    AttentionMaskInterface.register(GROUPED, sdpa_mask)


def supports_own_attention(model) -> bool:
    """Models whose attention layers dispatch through transformers' AttentionInterface and take no
    logit soft-capping inside attention. Sliding windows are not applied by segment attention:
    callers keep every segment, with what it reads, within the window."""
    if not routes_attention_through_interface(model):
        return False
    return not getattr(text_config(model), "attn_logit_softcapping", None)


@contextmanager
def use_attention(model, name: str):
    """Run `model` with attention `name` (SEGMENTS or GROUPED) inside the block; its previous
    attention is restored after."""
    _register()
    # transformers has no public getter for the attention in use; its config keeps it here.
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    if model.config._attn_implementation != name:
        # set_attn_implementation only logs a warning where it cannot switch: the model would silently
        # run its own attention with inputs prepared for ours.
        model.set_attn_implementation(previous)
        raise RuntimeError(f"{type(model).__name__} did not switch to attention '{name}'")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
