"""The fused LoRA training forward follows PEFT's dtype rule: under a bfloat16 base PEFT keeps the
adapter in float32, casts the input to it, adds the update to the base output in float32 and rounds
the sum to bfloat16 once; gradients flow back through the same casts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunescope.train import fused
from tunescope.train.fused import check_peft_dtype_rule, fuse_lora_forward, keep_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BF16_ULP = 2.0**-7  # bfloat16 keeps 8 significant bits: neighbours differ by at most 2^-7 of the value


def lora_layer(p: float, dtype: torch.dtype):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32)).to(dtype)
    model = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, lora_dropout=p, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    return model, layer


def assert_within_one_rounding(got: torch.Tensor, want: torch.Tensor):
    """Equal, except where float32-level differences before the final rounding to bfloat16 tip an
    element to its neighbour (folding 1/(1-p) and the scaling into A changes the float32 rounding)."""
    assert got.dtype == want.dtype == torch.bfloat16
    diff = (got.float() - want.float()).abs()
    assert bool((diff <= want.float().abs() * BF16_ULP).all())
    assert float((diff == 0).float().mean()) >= 0.95


def grads(*tensors):
    return [t.grad.clone() for t in tensors]


def test_a_bfloat16_base_trains_a_float32_adapter_as_peft_does_with_dropout():
    model, layer = lora_layer(0.25, torch.bfloat16)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert a.dtype == b.dtype == torch.float32  # PEFT's autocast_adapter_dtype
    assert fuse_lora_forward(model) == 1
    model.train()
    x = torch.randn(3, 50, 64).to(torch.bfloat16).requires_grad_()
    weights = torch.linspace(-1, 1, 32)
    torch.manual_seed(1)
    y = layer(x)
    (y.float() * weights).sum().backward()
    got = grads(x, a, b)
    for t in (x, a, b):
        t.grad = None
    torch.manual_seed(1)
    keep, p_eff = keep_mask(x, 0.25)
    update = F.linear(F.linear(x.float() * keep / (1 - p_eff), a), b) * layer.scaling["default"]
    ref = (layer.base_layer(x).float() + update).to(torch.bfloat16)  # PEFT's rule, with this mask
    (ref.float() * weights).sum().backward()
    assert_within_one_rounding(y, ref)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == got[2].dtype == torch.float32
    # The adapters' gradients are computed in float32 from the same bfloat16 output gradient.
    torch.testing.assert_close(got[1], a.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[2], b.grad, rtol=1e-5, atol=1e-6)
    # The input's gradient adds the base's and the update's parts in bfloat16, in the same order.
    torch.testing.assert_close(got[0], x.grad, rtol=BF16_ULP, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_training_forward_equals_peft_forward(dtype):
    fused_model, fused_layer = lora_layer(0.0, dtype)
    plain_model, plain_layer = lora_layer(0.0, dtype)
    fuse_lora_forward(fused_model)
    x = torch.randn(4, 9, 64).to(dtype)
    outputs = []
    for model, layer in ((fused_model, fused_layer), (plain_model, plain_layer)):
        model.train()
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.float().pow(2).sum().backward()
        outputs.append((y, xi.grad, [p.grad for p in model.parameters() if p.requires_grad]))
    (y, gx, gp), (y_ref, gx_ref, gp_ref) = outputs
    assert y.dtype == y_ref.dtype == dtype
    if dtype == torch.bfloat16:
        assert_within_one_rounding(y, y_ref)
        torch.testing.assert_close(gx, gx_ref, rtol=4 * BF16_ULP, atol=0)
        for got, want in zip(gp, gp_ref, strict=True):
            # float32 gradients of a loss of bfloat16 outputs: one output tipped to its neighbour moves
            # them by about one bfloat16 step of that output's share.
            torch.testing.assert_close(got, want, rtol=BF16_ULP, atol=1e-3)
    else:
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(gx, gx_ref)
        for got, want in zip(gp, gp_ref, strict=True):
            torch.testing.assert_close(got, want)


def test_the_dtype_rule_check_fails_loudly_if_peft_changed_it(monkeypatch):
    from peft.tuners.lora.layer import Linear

    monkeypatch.setattr(fused, "_PEFT_DTYPE_RULE_CHECKED", False)
    check_peft_dtype_rule()  # the installed peft follows the rule

    def update_added_in_the_input_dtype(self, x, *args, **kwargs):  # what the fused forward once assumed
        a, b = self.lora_A["default"], self.lora_B["default"]
        return self.base_layer(x) + (b(a(x.float())) * self.scaling["default"]).to(x.dtype)

    monkeypatch.setattr(Linear, "forward", update_added_in_the_input_dtype)
    monkeypatch.setattr(fused, "_PEFT_DTYPE_RULE_CHECKED", False)
    with pytest.raises(RuntimeError, match="no longer computes a LoRA layer's forward"):
        check_peft_dtype_rule()
    monkeypatch.setattr(fused, "_PEFT_DTYPE_RULE_CHECKED", False)
    with pytest.raises(RuntimeError, match="no longer computes a LoRA layer's forward"):
        fuse_lora_forward(lora_layer(0.0, torch.bfloat16)[0])
