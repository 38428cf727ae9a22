"""Facts about a model read from its config (text part of composite configs)."""

from __future__ import annotations


def text_config(model):
    cfg = model.config
    return getattr(cfg, "text_config", None) or cfg


def num_layers(model) -> int:
    return int(text_config(model).num_hidden_layers)


def sliding_window(model) -> tuple[int | None, bool]:
    """(sliding window, whether the model mixes sliding and full layers)."""
    cfg = text_config(model)
    window = getattr(cfg, "sliding_window", None)
    if getattr(cfg, "use_sliding_window", True) is False:
        window = None
    layer_types = getattr(cfg, "layer_types", None) or []
    hybrid = "sliding_attention" in layer_types and "full_attention" in layer_types
    if layer_types and "sliding_attention" not in layer_types:
        window = None
    return window, hybrid
