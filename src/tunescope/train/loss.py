"""Loss on supervised positions only.

The output layer is a large share of a small model's step (SmolLM2: 49k vocabulary × 576 hidden),
so we run the decoder, gather the hidden states at positions whose next token is supervised, and
apply the output layer to those rows alone. Prompt and padding positions never reach the vocabulary
projection. Models whose decoder cannot be separated from the head fall back to a full forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunescope.data.prompting import IGNORE_INDEX


@dataclass
class StepLoss:
    loss_sum: torch.Tensor  # summed cross-entropy over supervised tokens (differentiable)
    correct: int  # teacher-forced argmax hits on supervised tokens
    tokens: int  # supervised tokens


def _split_head(model: torch.nn.Module):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None:
        return None
    return decoder, head, getattr(base.config, "final_logit_softcapping", None)


def supervised_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> StepLoss:
    input_ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    # Position t predicts token t+1.
    targets = labels[:, 1:]
    select = targets != IGNORE_INDEX
    n_tokens = int(select.sum())
    parts = _split_head(model)
    if parts is None:
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1][select]
    else:
        decoder, head, softcap = parts
        hidden = decoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        logits = head(hidden[:, :-1][select])
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
    gold = targets[select]
    logits = logits.float()
    loss_sum = F.cross_entropy(logits, gold, reduction="sum")
    correct = int((logits.argmax(-1) == gold).sum())
    return StepLoss(loss_sum, correct, n_tokens)
