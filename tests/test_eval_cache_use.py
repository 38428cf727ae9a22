"""The evaluation engine hands its key/value caches to the model through the forward's `cache=`
keyword; a model that ignored that keyword would score without the cache. The engine checks that
each forward filled one cache entry per layer; these tests show that check fires."""

from __future__ import annotations

import pytest
import torch

from conftest import build_tiny_llama
from tunescope.evaluate.generation import Generator, GenRequest
from tunescope.evaluate.kvcache import SlotCache, prefilled_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ignoring_the_cache(model):
    """`model` whose forward drops `cache=`, as a model that named the keyword differently would."""
    forward = model.forward

    def dropping(*args, cache=None, **kwargs):
        return forward(*args, **kwargs)

    model.forward = dropping
    return model


def requests(tok) -> list[GenRequest]:
    return [GenRequest(tok("Question: how many apples?\nAnswer:")["input_ids"], [], 4)]


@torch.inference_mode()
def test_the_prefill_is_checked_to_fill_every_layer(tiny_tokenizer):
    model = build_tiny_llama(len(tiny_tokenizer)).eval()
    # the checks pass as is
    assert Generator(model, tiny_tokenizer, batch_size=1).run(requests(tiny_tokenizer))
    with pytest.raises(RuntimeError, match="did not fill the cache passed as cache="):
        Generator(ignoring_the_cache(model), tiny_tokenizer, batch_size=1).run(requests(tiny_tokenizer))


def test_a_decoding_step_that_skips_a_layer_is_refused():
    # Without the cache, transformers' attention fails on the mask's shape already; this covers a model
    # that writes some layers' cache and not others.
    cache = SlotCache(num_layers=2, slots=1, capacity=8)
    kv = torch.zeros(1, 2, 1, 4)
    cache.prepare_decode(1, torch.tensor([[0]]), span=1)
    cache.update(kv, kv, 0)
    cache.update(kv, kv, 1)
    cache.check_decoded()
    cache.prepare_decode(1, torch.tensor([[1]]), span=2)
    cache.update(kv, kv, 0)
    with pytest.raises(RuntimeError, match="wrote 1 cache entries for a model of 2 layers"):
        cache.check_decoded()


@torch.inference_mode()
def test_a_partly_filled_cache_is_refused(tiny_tokenizer):
    from transformers import DynamicCache

    model = build_tiny_llama(len(tiny_tokenizer)).eval()
    cache = DynamicCache()
    model(input_ids=torch.tensor([[5, 6, 7]]), cache=cache, use_cache=True)
    assert [k.shape[2] for k, _ in prefilled_layers(cache, 2, 3)] == [3, 3]
    with pytest.raises(RuntimeError, match=r"lengths \[3, 3\] for a model of 3 layers"):
        prefilled_layers(cache, 3, 3)
    with pytest.raises(RuntimeError, match="prefill of 4 tokens"):
        prefilled_layers(cache, 2, 4)
