"""Facts about a model read from its transformers config, shared by training and evaluation.

Composite configs (Gemma 3's image-text model) keep the language model's settings under
`text_config`; every lookup here goes through that part.
"""

from __future__ import annotations

# Config keys by which a model rescales its logits inside its own forward (Cohere, Granite, ...).
_LOGIT_SCALE_KEYS = ("logit_scale", "logits_scaling", "output_multiplier")


def text_config(model_or_config):
    """The language-model part of a config; accepts a model (its `.config`) or a config."""
    cfg = getattr(model_or_config, "config", model_or_config)
    return getattr(cfg, "text_config", None) or cfg


def base_model(model):
    """The transformers model under a PEFT wrapper (whose config and modules are the ones that matter)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def routes_attention_through_interface(model) -> bool:
    """Whether the model's attention layers dispatch through transformers' AttentionInterface, so that
    an attention function registered there replaces theirs (transformers' public
    `PreTrainedModel.is_backend_compatible()`; a PEFT wrapper is judged by its base model)."""
    check = getattr(base_model(model), "is_backend_compatible", None)
    return bool(check()) if callable(check) else False


def rescales_logits(model) -> bool:
    """Whether the model scales its logits in its head forward, so applying the output layer by hand
    (to selected hidden states only) would miss that scaling."""
    cfg = text_config(base_model(model))
    return any(getattr(cfg, key, None) not in (None, 1.0) for key in _LOGIT_SCALE_KEYS)


def logit_softcap(model) -> float | None:
    """The final-logit soft-capping constant (Gemma 2 / 3), or None."""
    return getattr(text_config(base_model(model)), "final_logit_softcapping", None)


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
