"""Batches with little padding: shuffle, then sort by length inside windows of many batches.

Sorting only inside a window keeps the epoch order random while putting sequences of similar
length together, so almost no compute is spent on padding (TRL's default pads every batch to its
longest member in random order). The order depends only on (seed, epoch): a resumed run replays it.
"""

from __future__ import annotations

import random

import torch

from tunescope.data.prompting import IGNORE_INDEX, Encoded


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, window: int = 32) -> list[list[int]]:
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    # Shuffle batch order so the long batches are not all at the start of each window.
    rng.shuffle(batches)
    return batches


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest member; padded positions carry label -100 and attention 0."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
