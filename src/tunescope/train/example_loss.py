"""Per-example loss of the trained model on its training examples.

The report lists the highest-loss training examples (the ones the model fits worst), which needs a
loss per example from the final model, not the running training loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunescope.data.prompting import IGNORE_INDEX, Encoded
from tunescope.train.batching import collate


@torch.no_grad()
def per_example_losses(model, examples: list[Encoded], batch_size: int, pad_id: int, device) -> list[float]:
    """Mean cross-entropy per supervised token for each example, in input order."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    losses = [float("nan")] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
        counts = (targets != IGNORE_INDEX).sum(dim=1).clamp(min=1)
        for row, i in enumerate(idx):
            losses[i] = float(token_loss[row].sum() / counts[row])
    model.train(was_training)
    return losses
