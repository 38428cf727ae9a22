"""Loss on supervised positions only, with the output layer applied in chunks.

The output layer is a large share of a small model's step (SmolLM2: 49k vocabulary × 576 hidden), so
we run the decoder, gather the hidden states at positions whose next token is supervised, and apply
the output layer to those rows alone: prompt and padding positions never reach the vocabulary
projection.

Those rows then go through `_HeadCrossEntropy`, which walks them in chunks and computes, per chunk,
the logits, the summed cross-entropy, the argmax hits and the gradient with respect to its inputs,
all in the forward pass. Because the loss is a scalar, its backward is only a rescaling of that
gradient, so the full `(rows × vocabulary)` logits, their log-softmax and its gradient are never held
in memory at once (about 600 MB for a batch of 8 × 200 tokens on SmolLM2). Models whose decoder
cannot be separated from the head, or whose own loss the by-hand head does not reproduce (checked
once per model, head_check.py), fall back to a full forward and autograd.

`SupervisedCausalLM` wraps a model so that its `forward` returns these loss pieces; it is the module
that DDP/FSDP wrap, so gradient synchronisation sees every parameter used in the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunescope.core.modelinfo import base_model, logit_softcap, rescales_logits
from tunescope.core.prompt_format import IGNORE_INDEX
from tunescope.train.head_check import BY_HAND, decide_loss_path

# Rows of logits held at once: 2**25 floats (128 MiB in float32) whatever the vocabulary.
HEAD_CHUNK_ELEMENTS = 2**25


@dataclass
class StepLoss:
    loss_sum: torch.Tensor  # summed cross-entropy over supervised tokens (differentiable)
    correct: int  # teacher-forced argmax hits on supervised tokens
    tokens: int  # supervised tokens


class _HeadCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(softcap(hidden @ weight.T), gold)) and argmax hits, chunk by chunk.

    The gradient is computed in the forward pass (softmax minus one-hot, times the weight) and only
    scaled by the incoming gradient in backward, so no chunk's logits outlive its iteration.
    """

    @staticmethod
    def forward(ctx, hidden, weight, gold, softcap, chunk_rows, need_grad):
        n = hidden.shape[0]
        ctx.weight_dtype = weight.dtype
        # Softmax statistics in at least float32, whatever the model's dtype.
        acc_dtype = torch.promote_types(hidden.dtype, torch.float32)
        loss = torch.zeros((), dtype=acc_dtype, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=acc_dtype) if need_grad[1] else None
        for start in range(0, n, chunk_rows):
            h = hidden[start : start + chunk_rows]
            g = gold[start : start + chunk_rows]
            z = (h @ weight.T).to(acc_dtype)
            if softcap:
                squashed = torch.tanh(z / softcap)
                z = squashed * softcap
            lse = torch.logsumexp(z, dim=-1)
            loss += (lse - z.gather(1, g[:, None]).squeeze(1)).sum()
            correct += (z.argmax(-1) == g).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            # d(loss)/d(logits) = softmax - one_hot, computed in place over the logits buffer.
            dz = z.sub_(lse[:, None]).exp_()
            dz[torch.arange(len(g), device=g.device), g] -= 1
            if softcap:
                dz.mul_(1 - squashed.square_())
            dz = dz.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk_rows] = dz @ weight
            if grad_weight is not None:
                grad_weight.addmm_(dz.T.to(acc_dtype), h.to(acc_dtype))
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None
        gw = (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None
        return gh, gw, None, None, None, None


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, gold: torch.Tensor,
                       softcap: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, argmax hits) of `hidden @ weight.T` against `gold`, memory-light."""
    chunk_rows = max(1, HEAD_CHUNK_ELEMENTS // weight.shape[0])
    grad_on = torch.is_grad_enabled()
    need = (grad_on and hidden.requires_grad, grad_on and weight.requires_grad)
    return _HeadCrossEntropy.apply(hidden, weight, gold, softcap, chunk_rows, need)


def split_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear, float | None] | None:
    """(decoder, output layer, logit soft-cap) when the output layer can be applied by hand to
    selected hidden states, as checked against the model's own loss (head_check.py); None when the
    model's own forward must produce the logits."""
    parts = head_parts(model)
    path, _ = decide_loss_path(model, parts)
    return parts if path == BY_HAND else None


def loss_path(model: torch.nn.Module) -> tuple[str, str]:
    """(head_check.BY_HAND or head_check.MODEL_FORWARD, why): the path every loss of `model` takes."""
    return decide_loss_path(model, head_parts(model))


def head_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear, float | None] | None:
    """(decoder, output layer, logit soft-cap) where the model's structure and config allow applying
    the output layer by hand; None where they do not. Not yet checked against the model's loss."""
    base = base_model(model)
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    if rescales_logits(base):
        return None  # the logits are rescaled in the model's own forward; let it do that
    return decoder, head, logit_softcap(base)


def per_token_cross_entropy(hidden: torch.Tensor, head: torch.nn.Linear, gold: torch.Tensor,
                            softcap: float | None = None) -> torch.Tensor:
    """Cross-entropy of each row of `head(hidden)` against `gold` (no gradient), the output layer
    applied `HEAD_CHUNK_ELEMENTS` logits at a time."""
    chunk = max(1, HEAD_CHUNK_ELEMENTS // head.weight.shape[0])
    pieces = []
    for start in range(0, len(gold), chunk):
        z = head(hidden[start : start + chunk]).float()
        if softcap:
            z = torch.tanh(z / softcap) * softcap
        pieces.append(F.cross_entropy(z, gold[start : start + chunk], reduction="none"))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0)


def supervised_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> StepLoss:
    input_ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    # Position t predicts token t+1.
    targets = labels[:, 1:]
    select = targets != IGNORE_INDEX
    n_tokens = int(select.sum())
    gold = targets[select]
    parts = split_head(model)
    if parts is None:
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1][select]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss_sum = F.cross_entropy(logits, gold, reduction="sum")
        correct = int((logits.argmax(-1) == gold).sum())
        return StepLoss(loss_sum, correct, n_tokens)
    decoder, head, softcap = parts
    hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    loss_sum, correct = head_cross_entropy(hidden[:, :-1][select], head.weight, gold, softcap)
    return StepLoss(loss_sum, int(correct), n_tokens)


class SupervisedCausalLM(torch.nn.Module):
    """`forward(**batch)` → `StepLoss`. The module handed to DDP/FSDP (see the module docstring)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels, attention_mask) -> StepLoss:
        return supervised_loss(self.model, {"input_ids": input_ids, "labels": labels,
                                            "attention_mask": attention_mask})
