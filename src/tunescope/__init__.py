"""tunescope: fine-tune, evaluate, analyse and report on small causal language models."""

__version__ = "0.1.0"
