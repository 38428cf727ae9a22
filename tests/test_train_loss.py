"""The loss: supervised positions only, the head applied to those rows alone, the fused LoRA dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import give_adapter_an_effect
from tunescope.config.run_config import DEFAULT_TEMPLATE, LoraConfig, TrainingConfig
from tunescope.core.prompt_format import IGNORE_INDEX
from tunescope.data.prompting import encode_dataset
from tunescope.train import loss as loss_mod
from tunescope.train.adapters import build_trainable
from tunescope.train.batching import collate
from tunescope.train.fused import fuse_lora_forward, keep_mask
from tunescope.train.loss import SupervisedCausalLM, head_cross_entropy, supervised_loss

ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "3+4 = 7\n#### 7"},
    {"question": "A shop sells 12 pens for $3 each. What is the total?", "answer": "12*3 = 36\n#### 36"},
    {"question": "She walks 5 miles each day for 6 days. How far?", "answer": "5 * 6 = 30 miles\n#### 30"},
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(tiny_model_dir, method="lora", dropout=0.0, dtype=torch.float64):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    cfg = TrainingConfig(method=method, lora=LoraConfig(dropout=dropout))
    # LoRA B starts at zero; give the adapter an effect so gradients are informative
    return give_adapter_an_effect(build_trainable(base, cfg))


def _batch(tokenizer, train_on_prompt=False):
    examples, _ = encode_dataset(ROWS, tokenizer, template=DEFAULT_TEMPLATE, use_chat_template=False,
                                 train_on_prompt=train_on_prompt, max_length=512, overflow="truncate")
    return collate(examples, tokenizer.pad_token_id)


def test_prompt_and_padding_positions_do_not_contribute(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir)
    batch = _batch(tiny_tokenizer)
    targets = batch["labels"][:, 1:]
    # Every prompt token is masked: the first supervised label of each row comes after "Response:".
    prompt_len = len(tiny_tokenizer("Instruction: " + ROWS[0]["question"] + "\nResponse:")["input_ids"])
    assert (batch["labels"][0, :prompt_len - 1] == IGNORE_INDEX).all()
    out = supervised_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    per_position = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    supervised = targets != IGNORE_INDEX
    assert out.tokens == int(supervised.sum())
    torch.testing.assert_close(out.loss_sum, per_position[supervised].sum())
    assert abs(out.loss_sum.item() - per_position.sum().item()) > 1.0  # masked positions really were left out
    # Loss on everything: more tokens are supervised and the sum changes accordingly.
    everything = supervised_loss(model, _batch(tiny_tokenizer, train_on_prompt=True))
    assert everything.tokens > out.tokens


def test_head_on_supervised_rows_equals_full_forward(tiny_model_dir, tiny_tokenizer, monkeypatch):
    batch = _batch(tiny_tokenizer)
    model = _model(tiny_model_dir)
    fast = supervised_loss(model, batch)
    fast.loss_sum.backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    monkeypatch.setattr(loss_mod, "split_head", lambda m: None)  # the plain full-logits path
    full = supervised_loss(model, batch)
    full.loss_sum.backward()
    torch.testing.assert_close(fast.loss_sum, full.loss_sum)
    assert fast.correct == full.correct and fast.tokens == full.tokens
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(fast_grads[n], p.grad, msg=n)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunked_head_matches_autograd(monkeypatch, softcap):
    monkeypatch.setattr(loss_mod, "HEAD_CHUNK_ELEMENTS", 7 * 50)  # 7 rows per chunk: several chunks
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    gold = torch.randint(0, 50, (23,))
    loss, correct = head_cross_entropy(hidden, weight, gold, softcap)
    (2.5 * loss).backward()
    logits = hidden @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    ref = 2.5 * F.cross_entropy(logits, gold, reduction="sum")
    grads = torch.autograd.grad(ref, (hidden, weight))
    torch.testing.assert_close(2.5 * loss, ref)
    assert int(correct) == int((logits.argmax(-1) == gold).sum())
    torch.testing.assert_close(hidden.grad, grads[0])
    torch.testing.assert_close(weight.grad, grads[1])


def test_full_fine_tuning_trains_the_tied_head(tiny_model_dir, tiny_tokenizer, monkeypatch):
    batch = _batch(tiny_tokenizer)
    model = _model(tiny_model_dir, method="full")
    supervised_loss(model, batch).loss_sum.backward()
    embed = model.get_input_embeddings().weight
    fast = embed.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(loss_mod, "split_head", lambda m: None)
    supervised_loss(model, batch).loss_sum.backward()
    # Llama's RMSNorm computes in float32 even for a float64 model, hence float32-level tolerance.
    torch.testing.assert_close(fast, embed.grad, rtol=1e-5, atol=1e-6)


def _lora_layer(p: float):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32)).double()
    model = get_peft_model(net, PeftLoraConfig(r=4, lora_alpha=8, lora_dropout=p, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    return model, layer


def test_fused_lora_forward_is_lora_with_inverted_dropout():
    model, layer = _lora_layer(0.25)
    assert fuse_lora_forward(model) == 1
    model.train()
    x = torch.randn(3, 50, 64, dtype=torch.float64, requires_grad=True)
    weights = torch.arange(32.0, dtype=torch.float64)
    torch.manual_seed(1)
    y = layer(x)
    (y * weights).sum().backward()
    fused = [t.grad.clone() for t in (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight)]
    x.grad = None
    model.zero_grad()
    torch.manual_seed(1)
    keep, p_eff = keep_mask(x, 0.25)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    ref = layer.base_layer(x) + layer.scaling["default"] * F.linear(F.linear(x * keep / (1 - p_eff), a), b)
    (ref * weights).sum().backward()
    torch.testing.assert_close(y, ref)
    for got, want in zip(fused, (x.grad, a.grad, b.grad), strict=True):
        torch.testing.assert_close(got, want)
    assert p_eff == pytest.approx(0.25, abs=1e-4)
    assert abs(1 - float(keep.double().mean()) - 0.25) < 0.02
    torch.manual_seed(2)
    assert not torch.equal(keep, keep_mask(x, 0.25)[0])  # a fresh mask per call


def test_fused_lora_forward_equals_peft_without_dropout_and_in_eval():
    fused_model, fused = _lora_layer(0.0)
    plain_model, plain = _lora_layer(0.0)
    fuse_lora_forward(fused_model)
    x = torch.randn(4, 64, dtype=torch.float64)
    for mode in ("train", "eval"):
        getattr(fused_model, mode)()
        getattr(plain_model, mode)()
        torch.testing.assert_close(fused(x), plain(x))
    fused_model.train()
    plain_model.train()
    fused(x).pow(2).sum().backward()
    plain(x).pow(2).sum().backward()
    for (n, p), q in zip(fused_model.named_parameters(), plain_model.parameters(), strict=True):
        if p.requires_grad:
            torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_fused_forward_only_for_plain_lora(tiny_model_dir):
    lora = _model(tiny_model_dir, dropout=0.1)
    dora = _model(tiny_model_dir, method="dora", dropout=0.1)
    fused = [m for m in lora.modules() if hasattr(m, "lora_A") and "forward" in vars(m)]
    assert len(fused) == 14  # 7 linear layers × 2 blocks
    assert not any(hasattr(m, "lora_A") and "forward" in vars(m) for m in dora.modules())
    # The parameter names (what PEFT saves) are PEFT's.
    assert all("lora_A.default.weight" in n or "lora_B.default.weight" in n
               for n, p in lora.named_parameters() if p.requires_grad)


def test_fused_swiglu_matches_autograd():
    from tunescope.train.fused import _SiluMul

    torch.manual_seed(0)
    gate = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SiluMul.apply, (gate, up))
    torch.testing.assert_close(_SiluMul.apply(gate, up), F.silu(gate) * up)


def test_wrapper_returns_the_same_loss(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir)
    batch = _batch(tiny_tokenizer)
    assert SupervisedCausalLM(model)(**batch).loss_sum.item() == supervised_loss(model, batch).loss_sum.item()


def test_per_example_losses_match_a_full_forward(tiny_model_dir, tiny_tokenizer, monkeypatch):
    from tunescope.train.example_loss import per_example_losses

    model = _model(tiny_model_dir)
    examples, _ = encode_dataset(ROWS, tiny_tokenizer, template=DEFAULT_TEMPLATE, use_chat_template=False,
                                 train_on_prompt=False, max_length=512, overflow="truncate")
    monkeypatch.setattr(loss_mod, "HEAD_CHUNK_ELEMENTS", 5 * 400)  # several chunks
    got = per_example_losses(model, examples, 2, tiny_tokenizer.pad_token_id, torch.device("cpu"))
    for e, value in zip(examples, got, strict=True):
        batch = collate([e], tiny_tokenizer.pad_token_id)
        with torch.no_grad():
            out = supervised_loss(model, batch)
        assert value == pytest.approx(out.loss_sum.item() / out.tokens, rel=1e-6)
