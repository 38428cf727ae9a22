"""Tokenisation that matches lm-eval's HF backend token for token.

- Special tokens: the tokenizer's own default (`add_bos_token=None` in HFLM), except that a text which
  already starts with the BOS string (a chat-templated prompt) is encoded without adding any.
- Log-likelihood pairs: trailing whitespace of the context moves to the front of the continuation;
  context + continuation is encoded whole and split at the length of the context's own encoding
  (so the boundary token is the one the tokenizer produces for the joined text).
- Empty context: the continuation is conditioned on the prefix token (BOS, else EOS).
- Truncation keeps the last tokens (left truncation), as lm-eval.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunescope.core.modelinfo import text_config


@dataclass
class Encoder:
    """Wraps an HF tokenizer with lm-eval's encoding rules."""

    tokenizer: object

    @property
    def bos_text(self) -> str | None:
        return getattr(self.tokenizer, "bos_token", None)

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        kwargs = {}
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        else:
            prefix = (self.tokenizer.decode([self.prefix_token_id])
                      if self.prefix_token_id is not None else None)
            if prefix and text.startswith(prefix):
                kwargs["add_special_tokens"] = False
        return list(self.tokenizer.encode(text, **kwargs))

    def encode_prompt(self, text: str) -> list[int]:
        """A generation prompt (lm-eval's batch encoding checks the BOS *string*, not the prefix token)."""
        kwargs = {}
        if self.bos_text and text.startswith(self.bos_text):
            kwargs["add_special_tokens"] = False
        return list(self.tokenizer(text, **kwargs)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens) for a log-likelihood request."""
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if self.prefix_token_id != cont[0]:
                return [self.prefix_token_id], cont
            return cont[:1], cont[1:]
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def max_length(model, tokenizer, default: int = 2048) -> int:
    """The context window, looked up the way lm-eval does (config first, then the tokenizer)."""
    cfg = text_config(getattr(model, "config", None))
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 10**12:  # transformers' "no limit" sentinel is ~1e30
        return int(model_max)
    return default
