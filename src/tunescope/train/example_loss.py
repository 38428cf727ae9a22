"""Per-example loss of the trained model on its training examples.

The report lists the highest-loss training examples (the ones the model fits worst), which needs a
loss per example from the final model, not the running training loss. Like training, this applies the
output layer only at supervised positions and in chunks (see loss.py), so scoring costs no more
memory than a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunescope.core.prompt_format import IGNORE_INDEX, Encoded
from tunescope.train import loss as loss_lib
from tunescope.train.batching import collate


@torch.no_grad()
def per_example_losses(model, examples: list[Encoded], batch_size: int, pad_id: int, device) -> list[float]:
    """Mean cross-entropy per supervised token for each example, in input order."""
    was_training = model.training
    model.eval()
    parts = loss_lib.split_head(model)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    losses = [float("nan")] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], pad_id).items()}
        targets = batch["labels"][:, 1:]
        select = targets != IGNORE_INDEX
        rows = select.nonzero()[:, 0]  # the example (row) of each supervised position
        gold = targets[select]
        if parts is None:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits[:, :-1]
            token_loss = F.cross_entropy(logits[select].float(), gold, reduction="none")
        else:
            decoder, head, softcap = parts
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             use_cache=False).last_hidden_state[:, :-1][select]
            token_loss = loss_lib.per_token_cross_entropy(hidden, head, gold, softcap)
        sums = torch.zeros(len(idx), dtype=torch.float64,
                           device=token_loss.device).index_add_(0, rows, token_loss.double())
        counts = select.sum(dim=1).clamp(min=1)
        for row, i in enumerate(idx):
            losses[i] = float(sums[row] / counts[row])
    model.train(was_training)
    return losses
