"""Model loading: built-in aliases, Hugging Face hub ids, local directories and GGUF files."""

from tunescope.models.loading import LoadedModel, load_model, materialize, pick_device, pick_dtype
from tunescope.models.registry import ALIASES, ModelAlias, resolve_alias

__all__ = ["ALIASES", "LoadedModel", "ModelAlias", "load_model", "materialize", "pick_device", "pick_dtype",
           "resolve_alias"]
