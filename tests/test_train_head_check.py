"""Training applies the output layer by hand only where that reproduces the model's own loss: checked
once per model against `model(labels=...)`, with the model's own forward as the fallback, and the
path that ran recorded in the run summary (train/head_check.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import build_tiny_llama
from families import run_training, tokenizer, train_examples, training_config
from tunescope.train import loss as loss_mod
from tunescope.train.adapters import build_trainable
from tunescope.train.batching import collate
from tunescope.train.example_loss import per_example_losses
from tunescope.train.head_check import BY_HAND, MODEL_FORWARD

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scaled_logits_model(scale: float):
    """A Llama whose forward multiplies its logits by `scale` without any config key saying so, as a
    model with its own head post-processing would: applying the output layer by hand misses it."""
    from transformers import LlamaForCausalLM

    class ScaledLogits(LlamaForCausalLM):
        def forward(self, *args, labels=None, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * scale
            if labels is not None:
                out.loss = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
            return out

    base = build_tiny_llama(len(tokenizer()))
    model = ScaledLogits(base.config)
    model.load_state_dict(base.state_dict())
    return model.eval()


def own_loss(model) -> float:
    batch = collate(train_examples(), tokenizer().pad_token_id)
    with torch.no_grad():
        return float(model(**batch).loss)


def first_step(model) -> dict:
    """The summary and first training loss of one LoRA step; the adapter starts as the identity, so that
    loss is the base model's."""
    cfg = training_config("lora")
    records = run_training(build_trainable(model, cfg), cfg)
    return {"loss": next(r["loss"] for r in records if r["kind"] == "train"),
            "summary": next(r for r in records if r["kind"] == "summary")}


def test_a_verified_head_is_applied_by_hand_and_recorded():
    model = build_tiny_llama(len(tokenizer())).eval()
    assert loss_mod.loss_path(model) == (BY_HAND,
                                         "the output layer applied by hand matched the model's own loss")
    assert loss_mod.split_head(model) is not None
    want = own_loss(model)
    step = first_step(model)
    assert step["summary"]["loss_path"] == BY_HAND
    assert step["loss"] == pytest.approx(want, abs=1e-5)


def test_a_head_the_loss_cannot_reproduce_falls_back_to_the_model_forward():
    model = scaled_logits_model(8.0)
    path, reason = loss_mod.loss_path(model)
    assert path == MODEL_FORWARD and "gave a loss of" in reason
    assert loss_mod.split_head(model) is None
    want = own_loss(model)
    step = first_step(model)
    assert (step["summary"]["loss_path"], step["summary"]["loss_path_reason"]) == (MODEL_FORWARD, reason)
    # The loss trained on is the model's own, which the by-hand head (unscaled logits) would have missed.
    assert step["loss"] == pytest.approx(want, abs=1e-5)
    assert abs(own_loss(build_tiny_llama(len(tokenizer())).eval()) - want) > 0.1  # far beyond the tolerances
    # The per-example losses of the report take the same path.
    model = scaled_logits_model(8.0)
    examples = train_examples()
    per_example = per_example_losses(model, examples, batch_size=4, pad_id=tokenizer().pad_token_id,
                                     device=torch.device("cpu"))
    tokens = [sum(1 for t in e.labels[1:] if t != -100) for e in examples]
    assert (sum(loss * n for loss, n in zip(per_example, tokens, strict=True)) / sum(tokens)
            == pytest.approx(want, rel=1e-4))


def test_a_head_with_a_bias_is_never_applied_by_hand():
    model = build_tiny_llama(len(tokenizer())).eval()
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.lm_head.out_features))
    path, reason = loss_mod.loss_path(model)
    assert path == MODEL_FORWARD and "cannot be applied" in reason
