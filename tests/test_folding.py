"""Evaluation folds a PEFT adapter into a temporary copy of each adapted weight (evaluate/folding.py):
the same answers as PEFT's own forward, the trained weights untouched, and PEFT's forward kept where
folding does not apply."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from conftest import build_tiny_llama, give_adapter_an_effect
from tunescope.core.prompt_format import prompt_prefix
from tunescope.data.synthetic import generate_problems
from tunescope.evaluate import folding, task_from_docs
from tunescope.evaluate.runner import evaluate_native

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEMPLATE = "Question: {question}\nAnswer: {answer}"


def adapted(tokenizer, **lora):
    torch.manual_seed(0)
    model = get_peft_model(build_tiny_llama(len(tokenizer)), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], **lora))
    return give_adapter_an_effect(model, 0.2).eval()


def evaluate(model, tokenizer) -> dict:
    task = task_from_docs("heldout", generate_problems(6, seed=2), prompt_prefix(TEMPLATE))
    records: dict = {}
    results = evaluate_native(model, tokenizer, [task], batch_size=3, max_new_tokens=12, records_out=records)
    return {"folded": results["tunescope"]["adapter_layers_folded"], "entry": results["results"]["heldout"],
            "responses": [r["response"] for r in records["heldout"]]}


def test_a_dora_model_scores_the_same_folded_and_unmerged(tiny_tokenizer, monkeypatch):
    model = adapted(tiny_tokenizer, use_dora=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    folded = evaluate(model, tiny_tokenizer)
    monkeypatch.setattr(folding, "MEMORY_SHARE", 0.0)  # no room for the copies: PEFT's forward
    unmerged = evaluate(model, tiny_tokenizer)
    assert (folded["folded"], unmerged["folded"]) == (2 * 3, 0)  # 2 layers × 3 target modules
    assert folded["responses"] == unmerged["responses"] and folded["entry"] == unmerged["entry"]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert not any(getattr(m, "merged", False) for m in model.modules())


def test_an_adapter_with_a_bias_keeps_pefts_forward(tiny_tokenizer):
    model = adapted(tiny_tokenizer, lora_bias=True)
    with folding.folded_adapters(model) as n:
        assert n == 0
    assert evaluate(model, tiny_tokenizer)["folded"] == 0


def test_a_plain_model_has_nothing_to_fold(tiny_tokenizer):
    with folding.folded_adapters(build_tiny_llama(len(tiny_tokenizer))) as n:
        assert n == 0


def test_a_merge_that_writes_into_the_trained_tensors_raises(tiny_tokenizer, monkeypatch):
    """Whatever the installed PEFT's merge() writes, a trained tensor changed by the fold is an error."""
    model = adapted(tiny_tokenizer)
    layer = next(m for m in model.modules() if folding._foldable(m))

    def merge_that_also_writes_the_adapter(self, safe_merge=False, adapter_names=None):
        self.lora_B["default"].weight.data.add_(1.0)

    monkeypatch.setattr(type(layer), "merge", merge_that_also_writes_the_adapter)
    with pytest.raises(folding.FoldingError, match="lora_B.default.weight"):
        with folding.folded_adapters(model):
            pass


def test_a_merge_that_copies_in_place_leaves_the_trained_weight_as_it_was(tiny_tokenizer, monkeypatch):
    """PEFT 0.22's safe merge copies the merged weight into the layer's tensor in place; 0.21 assigned a new
    one. Both are simulated here, whichever PEFT is installed: the trained weight keeps its storage and
    bits."""
    model = adapted(tiny_tokenizer)
    layer = next(m for m in model.modules() if folding._foldable(m))
    base = layer.get_base_layer()
    original, bits = base.weight.data, base.weight.detach().clone()

    def in_place(self, safe_merge=False, adapter_names=None):
        self.get_base_layer().weight.data.copy_(
            self.get_base_layer().weight + self.get_delta_weight("default"))
        self.merged_adapters.append("default")

    def new_tensor(self, safe_merge=False, adapter_names=None):
        self.get_base_layer().weight.data = self.get_base_layer().weight + self.get_delta_weight("default")
        self.merged_adapters.append("default")

    for merge in (in_place, new_tensor):
        monkeypatch.setattr(type(layer), "merge", merge)
        with folding.folded_adapters(model) as n:
            assert n > 0 and not torch.equal(base.weight, bits)  # the fold is in effect
        assert base.weight.data_ptr() == original.data_ptr() and torch.equal(base.weight, bits)
