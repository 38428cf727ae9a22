"""Generation through plain transformers: `model.generate`, one request at a time.

The path for models the native engine is not verified on (see `enginepath.py`). Each prompt is
generated alone, with no padding, so its answer is exactly what `model.generate` gives for that
prompt, whatever the model does with padding or batching. The request semantics are the native
`Generator`'s:

- greedy picks the argmax token; sampling uses the request's temperature / top_p / top_k and its
  own seed (transformers' sampler, so samples differ from the native engine's, not their law);
- a row ends at an EOS token (the generation config's or the tokenizer's), after `max_new_tokens`,
  or once a stop string appears in the generated text (never in the prompt);
- the answer is the generated tokens decoded with special tokens skipped and cut at the stop
  strings (`generation.postprocess`); `finish_reason` is "eos", "stop" or "length".

The checkpoint's own generation defaults (a repetition penalty, default sampling settings) are not
applied: the tasks define how to decode, and the native engine ignores them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from tunescope.evaluate.generation import GenRequest, GenResult, eos_token_ids, postprocess
from tunescope.evaluate.tokenization import Encoder


def generate_with_transformers(
    model, tokenizer, requests: list[GenRequest], on_done: Callable[[int, GenResult], None] | None = None,
    *, encoder: Encoder | None = None,
) -> list[GenResult]:
    """Run each request through `model.generate`; `on_done(index, result)` after each."""
    encoder = encoder or Encoder(tokenizer)
    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    device = next(model.parameters()).device
    results = []
    with torch.inference_mode(), _task_defines_decoding(model):
        for index, req in enumerate(requests):
            ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=device)
            stop = _StopStrings(encoder, req.until, len(req.prompt_ids))
            if req.do_sample:
                how = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p,
                       "top_k": req.top_k}
            else:
                how = {"do_sample": False}
            with _seeded(req.seed, device) if req.do_sample else nullcontext():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=req.max_new_tokens, eos_token_id=sorted(eos),
                                     pad_token_id=pad, stopping_criteria=StoppingCriteriaList([stop]), **how)
            generated = out[0, len(req.prompt_ids):].tolist()
            if generated and generated[-1] in eos:
                reason, generated = "eos", [t for t in generated if t not in eos]
            else:
                reason = "stop" if stop.hit else "length"
            result = GenResult(postprocess(encoder.decode(generated), req.until), generated, reason)
            results.append(result)
            if on_done is not None:
                on_done(index, result)
    return results


class _StopStrings(StoppingCriteria):
    """Ends generation once a stop string appears in the generated text; the prompt is never searched
    (transformers' `stop_strings` also match text that starts in the prompt)."""

    def __init__(self, encoder: Encoder, until: list[str], prompt_length: int):
        self.encoder = encoder
        self.until = [s for s in until if s]
        self.prompt_length = prompt_length
        self.longest = max((len(s) for s in self.until), default=0)
        self.checked = 0
        self.hit = False

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if self.until and not self.hit:
            text = self.encoder.decode(input_ids[0, self.prompt_length:].tolist())
            # Only from where the previous check could not yet have seen a whole stop string.
            start = max(0, self.checked - self.longest)
            self.checked = len(text)
            self.hit = any(s in text[start:] for s in self.until)
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool, device=input_ids.device)


@contextmanager
def _task_defines_decoding(model) -> Iterator[None]:
    """Swap the checkpoint's generation config for transformers' defaults (its special tokens kept):
    `generate` fills every setting left unset from the checkpoint's config, so passing our own
    settings alone would still let e.g. its repetition penalty change the tokens picked."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = getattr(hf, "generation_config", None)
    if saved is None:
        yield
        return
    hf.generation_config = GenerationConfig(bos_token_id=saved.bos_token_id, pad_token_id=saved.pad_token_id,
                                            decoder_start_token_id=saved.decoder_start_token_id)
    try:
        yield
    finally:
        hf.generation_config = saved


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Sample from `seed` without disturbing the caller's random state."""
    accelerators = [device.index or 0] if device.type != "cpu" else []
    with torch.random.fork_rng(devices=accelerators, device_type=device.type if accelerators else "cuda"):
        torch.manual_seed(seed)
        yield
