"""Whether the loss may apply the output layer by hand: checked once per model against its own loss.

train/loss.py runs the decoder, gathers the hidden states of supervised positions and applies the
output layer (with the logit soft-capping the config names) to those rows alone. That reproduces the
model's own logits only as far as `loss.split_head` knows its head: a model that scales, biases or
post-processes its logits in a way the config does not name would train on another loss. So before
a model's first loss, the by-hand computation is compared with the model's `model(labels=...)` loss
on a small fixed batch; where they disagree, or the check cannot run, every loss of that model goes
through its own forward (slower, and right for any model). The run summary records which path ran
(`loss_path`, `loss_path_reason`), as evaluation records its engine path.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from tunescope.core.modelinfo import base_model
from tunescope.core.prompt_format import IGNORE_INDEX

BY_HAND = "supervised rows"  # the output layer applied to the supervised positions only, in chunks
MODEL_FORWARD = "model forward"  # the model's own forward computes every position's logits

# Relative agreement required of the two losses: float32 rounding, or bfloat16/float16's.
_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4}
_HALF_TOLERANCE = 1e-3

_decisions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decide_loss_path(model: torch.nn.Module, parts) -> tuple[str, str]:
    """(BY_HAND or MODEL_FORWARD, why) for `model`, whose `loss.split_head` parts are `parts` (None
    where the head cannot be applied by hand). Decided at the first call for a model, then kept."""
    key = base_model(model)
    if key not in _decisions:
        _decisions[key] = _decide(model, parts)
    return _decisions[key]


def _decide(model, parts) -> tuple[str, str]:
    if parts is None:
        return MODEL_FORWARD, "the model's output layer cannot be applied to selected rows by hand"
    try:
        ours, theirs = _both_losses(model, parts)
    except Exception as e:  # a model whose own loss cannot run on the check batch: nothing verified
        return MODEL_FORWARD, f"the output layer by hand could not be checked ({type(e).__name__}: {e})"
    tolerance = _TOLERANCE.get(parts[1].weight.dtype, _HALF_TOLERANCE) * max(1.0, abs(theirs))
    if not abs(ours - theirs) <= tolerance:
        return MODEL_FORWARD, (f"the output layer applied by hand gave a loss of {ours:.6g}, the model's own "
                               f"forward {theirs:.6g}")
    return BY_HAND, "the output layer applied by hand matched the model's own loss"


@torch.no_grad()
def _both_losses(model, parts) -> tuple[float, float]:
    """(the by-hand loss, the model's own loss) on a fixed batch of two rows, one right-padded, with
    a prompt that carries no loss."""
    decoder, head, softcap = parts
    device = head.weight.device
    vocab = min(head.weight.shape[0], base_model(model).get_input_embeddings().num_embeddings)
    ids = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, :3] = IGNORE_INDEX
    was_training = model.training
    model.eval()
    try:
        theirs = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
        select = labels[:, 1:] != IGNORE_INDEX
        hidden = decoder(input_ids=ids, attention_mask=mask,
                         use_cache=False).last_hidden_state[:, :-1][select]
        logits = (hidden @ head.weight.T).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        ours = float(F.cross_entropy(logits, labels[:, 1:][select]))
    finally:
        model.train(was_training)
    return ours, theirs
