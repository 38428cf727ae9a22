"""Which path evaluates a model: the native engine, or plain transformers.

The native engine (continuous-batching `Generator` over its own slot KV cache; the packed
`LoglikelihoodScorer` with segment attention) reimplements part of what a transformers model does
around its layers: masks, cache layout, positions, batching. It is verified, against plain
transformers, on a list of model families; on anything else it could run and still be wrong. So
only those families take the native path, and every other model runs through plain transformers
(`model.generate` and unbatched forwards: slower, and correct for any model transformers runs).

`engine_path(model)` makes that decision and says why; `resolve_engine(model, requested)` applies
the user's setting (`auto`, `native`, `transformers`) on top of it.
"""

from __future__ import annotations

import logging

from tunescope.core.errors import UserError
from tunescope.core.modelinfo import base_model, routes_attention_through_interface, text_config

log = logging.getLogger(__name__)

NATIVE = "native"
TRANSFORMERS = "transformers"
ENGINE_CHOICES = ("auto", NATIVE, TRANSFORMERS)

# Model types (config.model_type) the native engine is verified on, family by family.
VERIFIED_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma2", "gemma3_text",
                            "gpt_neox"})
# Composite (multimodal) model types evaluated on text alone, whose text model is one of the above.
VERIFIED_COMPOSITES = {"gemma3": "gemma3_text"}

# Config fields that count the experts of a mixture-of-experts layer, across families.
_EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
# Model types whose attention adds ALiBi biases without a flag in the config saying so.
_ALIBI_TYPES = frozenset({"bloom", "mpt"})
# Attention layer kinds the engine's masks and caches implement.
_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})
# Rotary scalings whose frequencies depend on the longest position in a forward: one row's numbers
# would then depend on the other rows batched with it.
_LENGTH_DEPENDENT_ROPE = frozenset({"dynamic", "longrope"})


def check_engine(value: str, where: str = "engine") -> str:
    """`value` if it is a known engine setting; otherwise a UserError naming `where`."""
    if value not in ENGINE_CHOICES:
        raise UserError(f"unknown engine '{value}' (known: {', '.join(ENGINE_CHOICES)})", where=where)
    return value


def engine_path(model) -> tuple[str, str]:
    """(NATIVE, why) for a model the native engine is verified on; (TRANSFORMERS, why not) otherwise."""
    why_not = _unsupported(model)
    if why_not:
        return TRANSFORMERS, why_not
    cfg = base_model(model).config
    text_type = getattr(text_config(cfg), "model_type", None)
    if cfg.model_type in VERIFIED_COMPOSITES:
        return NATIVE, f"{cfg.model_type} (text model {text_type}) verified"
    return NATIVE, f"{cfg.model_type} verified"


def resolve_engine(model, requested: str = "auto") -> tuple[str, str]:
    """The path to run and why: the decision of `engine_path`, unless the user forced one."""
    check_engine(requested)
    decided, why = engine_path(model)
    if requested == "auto":
        return decided, why
    if requested == decided:
        return decided, f"forced by the engine setting; {why}"
    if requested == NATIVE:
        # Allowed (it is the user's explicit choice), but never silently.
        log.warning("engine 'native' forced on a model it is not verified on: %s", why)
        return NATIVE, f"forced by the engine setting; not verified: {why}"
    return TRANSFORMERS, f"forced by the engine setting; auto would pick native: {why}"


def engine_lines(results: dict) -> list[str]:
    """One line per distinct path and reason in an evaluation's results, for the command line."""
    seen: list[str] = []
    for info in results.get("tunescope", {}).get("tasks", {}).values():
        if "engine_path" in info:
            line = f"engine: {info['engine_path']} ({info['engine_reason']})"
            if line not in seen:
                seen.append(line)
    return seen


# -- the checks ---------------------------------------------------------------------------------------
def _unsupported(model) -> str | None:
    """Why the native engine must not run `model`, or None."""
    hf = base_model(model)
    cfg = getattr(hf, "config", None)
    if cfg is None or not getattr(cfg, "model_type", None):
        return "the model has no transformers config saying what it is"
    text = text_config(cfg)
    if any(getattr(c, "is_encoder_decoder", False) or getattr(c, "add_cross_attention", False)
           for c in (cfg, text)):
        return "encoder-decoder and cross-attention models are not implemented by the native engine"
    if _expert_count(text):
        return "mixture-of-experts routing is not implemented by the native engine"
    feature = _attention_feature(hf, text)
    if feature:
        return f"{feature} is not implemented by the native engine"
    rope = _rope_types(text) & _LENGTH_DEPENDENT_ROPE
    if rope:
        return (f"rotary scaling '{sorted(rope)[0]}' depends on the longest sequence in a batch, which the "
                "native engine's batching would change")
    if not routes_attention_through_interface(hf):
        return f"{type(hf).__name__} does not route its attention through transformers' attention interface"
    if not type(hf).__module__.startswith("transformers."):
        return (f"model code from outside transformers, {type(hf).__module__}, is not verified with the "
                "native engine")
    if cfg.model_type in VERIFIED_COMPOSITES:
        if getattr(text, "model_type", None) != VERIFIED_COMPOSITES[cfg.model_type]:
            return f"{cfg.model_type} with text model '{getattr(text, 'model_type', None)}' is not verified"
        return None
    if text is not cfg:
        return f"composite model type '{cfg.model_type}' is not verified with the native engine"
    if cfg.model_type not in VERIFIED_TYPES:
        return f"model type '{cfg.model_type}' is not verified with the native engine"
    return None


def _expert_count(cfg) -> int:
    for holder in (cfg, getattr(cfg, "ffn_config", None)):  # DBRX keeps its MoE settings in ffn_config
        for name in _EXPERT_COUNTS:
            value = getattr(holder, name, None) if holder is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return 0


def _attention_feature(hf, cfg) -> str | None:
    """An attention feature outside what the engine's masks, caches and attention functions implement."""
    attn_config = getattr(cfg, "attn_config", None)
    if (getattr(cfg, "alibi", False) or getattr(cfg, "position_embedding_type", None) == "alibi"
            or getattr(attn_config, "alibi", False) or cfg.model_type in _ALIBI_TYPES):
        return "ALiBi attention bias"
    if any(name.endswith("sinks") for name, _ in hf.named_parameters()) or any(
            "sink" in key and value for key, value in cfg.to_dict().items()):
        return "attention sinks"
    if getattr(cfg, "attention_chunk_size", None):
        return "chunked attention"
    if getattr(cfg, "use_bidirectional_attention", False) or getattr(cfg, "is_causal", True) is False:
        return "bidirectional attention"
    other = sorted(set(getattr(cfg, "layer_types", None) or []) - _LAYER_TYPES)
    if other:
        return f"layer type '{other[0]}'"
    return None


def _rope_types(cfg) -> set[str]:
    """Every rotary type in the config (per layer type where the config has one per layer type)."""
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if not isinstance(params, dict):
        return set()
    if "rope_type" in params or "type" in params:
        return {str(params.get("rope_type") or params.get("type"))}
    return {str(p.get("rope_type") or p.get("type")) for p in params.values() if isinstance(p, dict)}
