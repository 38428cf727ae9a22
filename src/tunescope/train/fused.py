"""Fused training forwards: the same functions as PEFT's LoRA layer and a SwiGLU MLP, computed with
fewer passes over the activations and less memory kept for backward.

LoRA (`_LoraDelta`, replacing PEFT's forward of plain-LoRA layers while training):

- the dropout mask comes from 16 random bits per element (four per int64 draw) compared with a
  threshold, instead of `bernoulli_` on a float tensor (2-3× faster on CPU, where it was a sixth
  of a step);
- the 1/(1-p) and `scaling` factors are folded into the small r×in matrix, and B's product is added
  into the base output in place, saving full-size elementwise passes in both directions;
- backward keeps only the layer input (shared by q/k/v and by gate/up, so stored once), a 1-byte
  mask and the r-wide projection, not a float mask plus a dropped-out copy of the input.

Dtypes follow PEFT's rule: the input is cast to the adapter's dtype (PEFT keeps adapters in float32
under a bfloat16 base, `autocast_adapter_dtype`), the update is computed in that dtype, added to the
base output in the promoted dtype and the sum cast back to the base output's dtype. Gradients flow
back through the same casts. When a model is first fused, `check_peft_dtype_rule` verifies that the
installed PEFT still computes its forward this way, and raises if not.

DoRA and other variants, several active adapters, merged or disabled adapters, input casting turned
off (`peft.helpers.disable_input_dtype_casting`), autocast, and evaluation keep PEFT's forward.
Parameter names and values are untouched, so saving, loading and merging stay PEFT's.

SwiGLU (`silu(gate) * up`): autograd keeps gate, silu(gate) and up; `_SiluMul` keeps gate and up
and recomputes silu(gate) in backward, 12% less activation memory for SmolLM2 for one cheap extra op.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def fuse_lora_forward(model: torch.nn.Module) -> int:
    """Give every plain-LoRA layer the fused training forward; returns how many layers changed."""
    changed = 0
    for module in model.modules():
        if not (hasattr(module, "lora_A") and isinstance(getattr(module, "base_layer", None),
                                                         torch.nn.Linear)):
            continue  # bitsandbytes' 4-bit layers subclass nn.Linear too
        if getattr(module, "lora_variant", None) or getattr(module, "use_dora", {}).get("default"):
            continue  # DoRA & co. read lora_A and the dropout separately
        if any(b.bias is not None for b in module.lora_B.values()):
            continue
        module.forward = types.MethodType(_make_fused_forward(module.forward), module)
        changed += 1
    if changed:
        check_peft_dtype_rule()
    return changed


def _make_fused_forward(original):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        adapters = self.active_adapters
        if (args or kwargs or not self.training or self.disable_adapters or self.merged or len(adapters) != 1
                or adapters[0] not in self.lora_A or torch.is_autocast_enabled(x.device.type)):
            return original(x, *args, **kwargs)
        name = adapters[0]
        lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
        if lora_a.dtype != lora_b.dtype or (x.dtype != lora_a.dtype
                                            and not getattr(self, "cast_input_dtype_enabled", True)):
            return original(x, *args, **kwargs)
        dropout = self.lora_dropout[name]
        p = dropout.p if isinstance(dropout, torch.nn.Dropout) else 0.0
        y = self.base_layer(x)
        return _LoraDelta.apply(y, x, lora_a, lora_b, self.scaling[name], p)

    return forward


_PEFT_DTYPE_RULE_CHECKED = False


def check_peft_dtype_rule() -> None:
    """Raise unless the installed PEFT's LoRA forward computes, for a bfloat16 base with float32
    adapters, what `_LoraDelta` computes: adapters kept in float32, the input cast to them, the update
    added to the base output in float32 and the sum rounded to bfloat16 once. Checked bit for bit
    against those steps done here with the layer's own modules; once per process."""
    global _PEFT_DTYPE_RULE_CHECKED
    if _PEFT_DTYPE_RULE_CHECKED:
        return
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(16, 16, bias=False)).to(torch.bfloat16)
        layer = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["0"])).base_model.model[0]
        lora_a, lora_b = layer.lora_A["default"], layer.lora_B["default"]
        lora_b.weight.normal_()
        x = torch.randn(8, 16).to(torch.bfloat16)
        got = layer.eval()(x)
        want = (layer.base_layer(x).float()
                + lora_b(lora_a(x.float())) * layer.scaling["default"]).to(x.dtype)
        same = lora_a.weight.dtype == torch.float32 and got.dtype == x.dtype and torch.equal(got, want)
    if not same:
        raise RuntimeError("the installed peft no longer computes a LoRA layer's forward as tunescope's "
                           "fused training forward does (float32 adapters under a bfloat16 base, the input "
                           "cast to them, the update added in float32); install a peft within tunescope's "
                           "supported range")
    _PEFT_DTYPE_RULE_CHECKED = True


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A 0/1 uint8 keep-mask with P(drop) = round(p·65536)/65536, and that drop probability.

    One int64 draw gives four 16-bit lanes; comparing lanes with a threshold is several times faster
    on CPU than `bernoulli_`, which draws and converts one float per element.
    """
    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    lanes = bits.view(torch.int16)[:n].view(x.shape)
    drops = round(p * 65536)
    # A bool tensor viewed as uint8 multiplies faster than torch.where with a bool mask.
    return (lanes >= drops - 32768).view(torch.uint8), drops / 65536


class _LoraDelta(torch.autograd.Function):
    """y += scaling · dropout(x) A^T B^T, in place, in PEFT's dtypes; see the module docstring."""

    @staticmethod
    def forward(ctx, y, x, lora_a, lora_b, scaling, p):
        xa = x.to(lora_a.dtype)  # PEFT casts the input to the adapter's dtype
        if p > 0:
            keep, p_eff = keep_mask(x, p)
            kept = xa * keep
        else:
            keep, p_eff, kept = None, 0.0, xa
        coef = scaling / (1.0 - p_eff)
        h = kept @ (lora_a * coef).T  # rows × r, already scaled, in the adapter's dtype
        y2 = y.view(-1, y.shape[-1])
        h2 = h.reshape(-1, h.shape[-1])
        if y.dtype == lora_a.dtype:
            y2.addmm_(h2, lora_b.T)
        else:
            # PEFT adds the update to the base output in the promoted dtype and rounds the sum once.
            summed = torch.promote_types(y.dtype, lora_a.dtype)
            if summed == lora_a.dtype:
                y2.copy_(torch.addmm(y2.to(summed), h2, lora_b.T))
            else:
                y2.copy_(y2.to(summed).add_(h2 @ lora_b.T))
        ctx.mark_dirty(y)
        ctx.save_for_backward(x, keep, h, lora_a, lora_b)
        ctx.coef = coef
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, keep, h, lora_a, lora_b = ctx.saved_tensors
        g = grad_y.reshape(-1, grad_y.shape[-1]).to(lora_b.dtype)  # the update's gradient, in its dtype
        q = (g @ lora_b).mul_(ctx.coef)  # rows × r: d(loss)/d(x A^T), with the scale folded in
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_x = (q @ lora_a).view(x.shape)
            if keep is not None:
                grad_x = grad_x.mul_(keep)
            grad_x = grad_x.to(x.dtype)  # back through PEFT's cast of the input
        if ctx.needs_input_grad[2]:
            xa = x.to(lora_a.dtype)
            kept = xa * keep if keep is not None else xa
            grad_a = q.T @ kept.reshape(-1, x.shape[-1])
        if ctx.needs_input_grad[3]:
            grad_b = g.T @ h.reshape(-1, h.shape[-1])
        return grad_y, grad_x, grad_a, grad_b, None, None


SILU = {"SiLU", "SiLUActivation"}


def fuse_swiglu(model: torch.nn.Module) -> int:
    """Use `_SiluMul` in every gate/up/down MLP whose activation is SiLU; returns how many changed."""
    changed = 0
    for module in model.modules():
        act = getattr(module, "act_fn", None)
        # torch's SiLU, or transformers' SiLUActivation (which calls F.silu)
        if (all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj"))
                and type(act).__name__ in SILU):
            module.forward = types.MethodType(_swiglu_forward, module)
            changed += 1
    return changed


def _swiglu_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(_SiluMul.apply(self.gate_proj(x), self.up_proj(x)))


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_up = grad * F.silu(gate) if ctx.needs_input_grad[1] else None
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        return grad_gate, grad_up
