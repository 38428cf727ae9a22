"""Length-grouped batches: deterministic per (seed, epoch), every example once, little padding."""

from __future__ import annotations

import random

from tunescope.core.prompt_format import IGNORE_INDEX, Encoded
from tunescope.train.batching import collate, epoch_batches, split_by_tokens, supervised_count
from tunescope.train.loop import TrainState, _micro_batches


def _lengths(n: int = 203, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 400) for _ in range(n)]


def test_epoch_batches_are_deterministic_and_cover_every_example_once():
    lengths = _lengths()
    for epoch in range(3):
        batches = epoch_batches(lengths, 8, seed=7, epoch=epoch)
        assert batches == epoch_batches(lengths, 8, seed=7, epoch=epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))  # each exactly once
        assert all(1 <= len(b) <= 8 for b in batches)
    assert epoch_batches(lengths, 8, 7, 0) != epoch_batches(lengths, 8, 7, 1)
    assert epoch_batches(lengths, 8, 7, 0) != epoch_batches(lengths, 8, 8, 0)


def test_length_grouping_pads_far_less_than_random_batches():
    lengths = _lengths(512)

    def padding(batches):
        total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths) / total

    rng = random.Random(0)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    random_batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    grouped = epoch_batches(lengths, 8, seed=0, epoch=0)
    assert padding(grouped) < 0.05 < 0.3 < padding(random_batches)


def test_resumed_stream_replays_the_same_order():
    lengths = _lengths(50)
    fresh = _micro_batches(lengths, 4, 3, TrainState())
    first = [next(fresh) for _ in range(30)]  # crosses an epoch boundary (13 batches per epoch)
    state = TrainState()
    stream = _micro_batches(lengths, 4, 3, state)
    for _ in range(17):
        next(stream)
    resumed = _micro_batches(lengths, 4, 3,
                             TrainState(epoch=state.epoch, batch_in_epoch=state.batch_in_epoch))
    assert [next(resumed) for _ in range(13)] == first[17:]


def test_split_by_tokens_respects_the_budget_and_keeps_every_row():
    lengths = [153, 147, 147, 141, 141, 139, 138, 132, 500]
    batch = list(range(8))
    assert split_by_tokens(batch, lengths, None) == [batch]
    for budget in (1500, 1024, 512, 300):
        pieces = split_by_tokens(batch, lengths, budget)
        assert sorted(i for p in pieces for i in p) == batch
        assert all(len(p) * max(lengths[i] for i in p) <= budget for p in pieces)
    assert [len(p) for p in split_by_tokens(batch, lengths, 1024)] == [4, 4]  # even, not 6 + 2
    assert split_by_tokens([8, 0], lengths, 100) == [[8], [0]]  # over-long rows stand alone


def test_collate_pads_right_with_ignored_labels():
    examples = [Encoded([5, 6, 7], [IGNORE_INDEX, 6, 7]), Encoded([5, 6], [IGNORE_INDEX, 6])]
    batch = collate(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 6, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert [supervised_count(e) for e in examples] == [2, 1]
