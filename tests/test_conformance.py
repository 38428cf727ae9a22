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
    assert result.greedy_margin > 1e-5, "the random model has a near-tie: a comparison of argmaxes is not meaningful"
    assert result.mismatches == [] and result.equal == result.total == 16
    # What the comparison covered: rows ended both on their token budget and on a stop string, and
    # prompt lookup proposed drafts, some of which the model confirmed (so later steps read kept drafts
    # from the cache).
    assert result.finish_reasons.get("stop", 0) > 0 and result.finish_reasons.get("length", 0) > 0
    assert result.proposed_drafts[1] > 0 and result.proposed_drafts[8] > 0
    assert result.accepted_drafts[1] > 0, "no drafted token was kept: the prompts no longer exercise kept drafts"


@pytest.mark.parametrize("name", NAMES)
def test_training_loss_matches_transformers_loss(name):
    assert check_train_loss(build_model(FAMILIES[name])) < 1e-5


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
@pytest.mark.parametrize("name", NAMES)
def test_one_training_step(name, method):
    from tunescope.train.batching import collate

    result = train_one_step(FAMILIES[name], method)
    assert math.isfinite(result.loss)
    # Before the first step the adapters are the identity (B = 0), so the step's loss is the base
    # model's loss on the same examples, which transformers computes from the labels.
    batch = collate(train_examples(), tokenizer().pad_token_id)
    with torch.no_grad():
        want = build_model(FAMILIES[name])(**batch).loss
    assert abs(result.loss - float(want)) < 1e-5
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
