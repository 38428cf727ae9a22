"""Architecture conformance: every model family tunescope serves goes through the evaluation engine and
the training code with the same results as plain transformers.

The engine takes shortcuts that depend on a model's architecture (documents packed into one row with
its own attention functions, a slot KV cache with sliding-window masks, prompt-lookup drafting, the
output layer applied to selected rows with soft-capping by hand), and so does training (the chunked
head, fused LoRA / SwiGLU forwards). Each family is a tiny random-weight model built from its
transformers config (tests/families.py), checked against a reference computed here with transformers
alone. `benchmarks/conformance.py` prints the same checks as a table.
"""

from __future__ import annotations

import math

import pytest
import torch

from families import (
    ALIAS_FAMILIES,
    FAMILIES,
    build_model,
    check_folding,
    check_fused_lora,
    check_generation,
    check_loglikelihood,
    check_merge,
    check_resume,
    check_train_loss,
    expected_to_change,
    tokenizer,
    train_examples,
    train_one_step,
)
from tunescope.evaluate import enginepath

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = list(FAMILIES)
# Gemma 2 soft-caps attention scores, which the engine's own attention functions do not implement:
# its log-likelihoods are computed pair by pair with the model's own forward (LoglikelihoodScorer's
# "plain" path) and its decoding uses transformers' attention on the slot cache.
UNPACKED = {"gemma2"}


def test_every_built_in_alias_has_its_family_here():
    from tunescope.models.registry import ALIASES

    assert set(ALIAS_FAMILIES) == set(ALIASES), "map each new alias to its architecture in tests/families.py"
    assert set(ALIAS_FAMILIES.values()) <= set(FAMILIES)


def test_the_native_engine_is_verified_on_exactly_these_families():
    """The evaluation runs the native engine only on the model types it declares verified; this matrix
    is what verifies them, so the two lists must agree."""
    tok = tokenizer()
    assert {f.config(tok).model_type for f in FAMILIES.values()} == (
        set(enginepath.VERIFIED_TYPES) | set(enginepath.VERIFIED_COMPOSITES))
    for name, family in FAMILIES.items():
        assert enginepath.engine_path(build_model(family))[0] == enginepath.NATIVE, name


@pytest.mark.parametrize("name", NAMES)
def test_loglikelihoods_match_a_plain_forward(name):
    result = check_loglikelihood(build_model(FAMILIES[name]))
    assert result.details == [] and result.max_abs_diff <= 2e-5
    assert result.greedy_mismatches == []
    assert result.greedy_pairs > 0  # is_greedy was compared where it is True, not only where it is False
    if name in UNPACKED:
        assert not result.packing and result.plain_pairs == result.pairs
    else:
        assert result.packing and result.packed_documents > 0
    if FAMILIES[name].window:
        # A context longer than the window never goes through the packed path (segment attention has no
        # window); short documents still do, where the model allows packing.
        assert result.plain_pairs > 0


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_generate(name):
    result = check_generation(build_model(FAMILIES[name]))
    assert result.greedy_margin > 1e-5, (
        "the random model has a near-tie: a comparison of argmaxes is not meaningful")
    assert result.mismatches == [] and result.equal == result.total == 16
    # What the comparison covered: rows ended both on their token budget and on a stop string, and
    # prompt lookup proposed drafts, some of which the model confirmed (so later steps read kept drafts
    # from the cache).
    assert result.finish_reasons.get("stop", 0) > 0 and result.finish_reasons.get("length", 0) > 0
    assert result.proposed_drafts[1] > 0 and result.proposed_drafts[8] > 0
    assert result.accepted_drafts[1] > 0, (
        "no drafted token was kept: the prompts no longer exercise kept drafts")


# Training is checked in float32 and in bfloat16 (a base model in bfloat16, PEFT's adapters in float32).
# bfloat16 keeps 8 significant bits, so its tolerances are set by that rounding, not by float32's:
BF16 = torch.bfloat16
# The loss: both sides compute the same bfloat16 hidden states; the head's bfloat16 product on the
# supervised rows alone may round differently from the full product, and float32 sums run in another
# order. Measured up to 8e-6 (Gemma 2); a float32-accumulated mean of hundreds of token losses.
LOSS_TOLERANCE = {torch.float32: 1e-5, BF16: 5e-5}


@pytest.mark.parametrize("dtype", [torch.float32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_training_loss_matches_transformers_loss(name, dtype):
    assert check_train_loss(build_model(FAMILIES[name], dtype=dtype)) < LOSS_TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_fused_lora_training_equals_peft_forward(name, dtype):
    """The fused LoRA forward computes PEFT's function in PEFT's dtypes (train/fused.py)."""
    result = check_fused_lora(FAMILIES[name], dtype)
    assert result.fused_layers > 0 and result.adapter_dtype == torch.float32  # PEFT's autocast_adapter_dtype
    if dtype == torch.float32:
        assert result.loss_diff <= 1e-6 * result.loss and result.max_grad_diff <= 1e-5
    else:
        # Folding the scaling into A rounds the float32 update differently, so where the sum with the
        # bfloat16 base output lies near a rounding boundary it tips to the neighbouring bfloat16 value
        # (one step = 2^-8..2^-7 relative); those flips travel through the later layers. Measured: loss
        # within 7e-5 relative, gradients within 0.8% of each tensor's largest (about one step). Casting
        # the adapter to bfloat16 instead, as PEFT does not, moved the gradients by 3-5%.
        assert result.loss_diff <= 2**-12 * result.loss and result.max_grad_diff <= 2**-6


@pytest.mark.parametrize(("method", "dtype"), [("lora", torch.float32), ("dora", torch.float32),
                                               ("full", torch.float32), ("lora", BF16)],
                         ids=["lora", "dora", "full", "lora-bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_one_training_step(name, method, dtype):
    from tunescope.train.batching import collate

    result = train_one_step(FAMILIES[name], method, dtype)
    assert math.isfinite(result.loss)
    # Before the first step the adapters are the identity (B = 0), so the step's loss is the base
    # model's loss on the same examples, which transformers computes from the labels.
    batch = collate(train_examples(), tokenizer().pad_token_id)
    with torch.no_grad():
        want = build_model(FAMILIES[name], dtype=dtype)(**batch).loss
    assert abs(result.loss - float(want)) < LOSS_TOLERANCE[dtype]
    assert result.changed > 0
    assert [n for n in result.unchanged if expected_to_change(FAMILIES[name], n, method)] == []


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("name", NAMES)
def test_merged_export_equals_base_plus_adapter(name, method, tmp_path):
    result = check_merge(FAMILIES[name], tmp_path, method)
    assert result.adapter_effect > 1e-1
    # float32: folding the update into the weights rounds differently from applying it on the side.
    assert result.max_abs_diff <= 1e-5 * max(1.0, result.logit_scale)


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("name", NAMES)
def test_evaluation_with_adapters_folded_equals_the_unmerged_forward(name, method):
    result = check_folding(FAMILIES[name], method)
    assert result.layers_folded > 0 and result.adapter_effect > 1e-1
    # float32: the merged weight rounds differently from applying the update on the side, as in export.
    assert result.max_abs_diff <= 1e-5 * max(1.0, result.logit_scale)
    assert result.restored_exactly  # training resumes from exactly the weights it left


@pytest.mark.parametrize("name", NAMES)
def test_resume_continues_the_uninterrupted_run(name, tmp_path):
    loss_diff, weight_diff = check_resume(FAMILIES[name], tmp_path)
    # Bit for bit on CPU with the same thread count (train/checkpoint.py).
    assert loss_diff == 0.0 and weight_diff == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_a_model_that_declares_the_attention_interface_calls_a_registered_function_in_every_layer(name):
    """The engine swaps attention through transformers' AttentionInterface on models whose public
    `is_backend_compatible()` says they route through it; this checks the promise behind that flag."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    from tunescope.core.modelinfo import num_layers, routes_attention_through_interface

    model = build_model(FAMILIES[name])
    assert routes_attention_through_interface(model)
    calls = []

    def counting(module, query, *args, **kwargs):  # the values do not matter here, only who calls
        calls.append(module.layer_idx)
        return torch.zeros_like(query).transpose(1, 2).contiguous(), None

    AttentionInterface.register("conformance_counting", counting)
    AttentionMaskInterface.register("conformance_counting", sdpa_mask)
    model.set_attn_implementation("conformance_counting")
    with torch.no_grad():
        model(input_ids=torch.tensor([tokenizer()("Tom has 3 apples.")["input_ids"]]), use_cache=False)
    assert sorted(calls) == list(range(num_layers(model)))
