"""Log-likelihood of continuations given a context, for multiple-choice tasks.

Scores are those of lm-eval's HF backend: for a (context, continuation) pair tokenised by
`Encoder.encode_pair`, the model reads `(ctx + cont)[:-1]` and the score is the sum of the
log-softmax at the positions that predict the continuation tokens; `is_greedy` tells whether each
of them was the argmax.

Fast path ("packed"): the choices of one document share their context, so the context is run once
and every choice's continuation follows it, seeing the context and itself only. Documents are laid
end to end in one row with no padding (`attention.py` gives each its own attention). A single-token
continuation needs no tokens of its own at all: MMLU's four letters are read off one forward of the
question. A prefix common to all documents (MMLU's description line) is run once and its keys and
values are shared. Only the positions that predict continuation tokens go through the output layer.

Generic path ("plain"), used for truncated pairs and as the reference in tests: each pair alone,
exactly as lm-eval runs it, including left truncation to the context window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tunescope.core.modelinfo import logit_softcap, num_layers, rescales_logits, sliding_window
from tunescope.evaluate.attention import SEGMENTS, Segment, SegmentPlan, supports_own_attention, use_attention

# Below this many shared tokens a separate prefix forward costs more than it saves.
_MIN_SHARED_PREFIX = 8


@dataclass
class ChoiceGroup:
    """One document's requests: a shared context and one continuation per choice (token ids)."""

    context: list[int]
    continuations: list[list[int]]


@dataclass
class Scored:
    loglikelihood: float
    is_greedy: bool


def _output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The model's output layer applied to selected hidden states (with logit
    soft-capping if the model uses it)."""
    logits = model.get_output_embeddings()(hidden)
    cap = logit_softcap(model)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _decoder(model):
    """The transformer body (everything before the output layer)."""
    return model.get_decoder()


def _supports_packing(model) -> bool:
    if not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        return False
    if not supports_own_attention(model):
        return False
    # Models that scale logits in their head forward would need that applied by hand.
    return not rescales_logits(model)


class LoglikelihoodScorer:
    def __init__(self, model, *, batch_size: int, max_length: int, packing: bool = True):
        """`packing=False` scores every pair on the plain path (models the
        native engine is not verified on)."""
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.max_length = max_length
        self.device = next(model.parameters()).device
        window, _ = sliding_window(model)
        self.window = window
        self.packing = packing and _supports_packing(model)

    # -- public -----------------------------------------------------------------------------------
    def score_groups(
        self, groups: list[ChoiceGroup], on_done: Callable[[int, list[Scored]], None] | None = None
    ) -> tuple[list[list[Scored]], int]:
        """Scores per group and choice, and how many groups had to be truncated."""
        results: list[list[Scored] | None] = [None] * len(groups)
        packed, plain = [], []
        truncated = 0
        for i, g in enumerate(groups):
            too_long = any(len(g.context) + len(c) > self.max_length + 1 for c in g.continuations)
            truncated += too_long
            length = self._packed_length(g)
            if (too_long or not self.packing or length > self.max_length
                    or (self.window and length > self.window)):
                plain.append(i)
            else:
                packed.append(i)
        with torch.inference_mode():
            # Longest first, as lm-eval orders its requests.
            packed.sort(key=lambda i: -self._packed_length(groups[i]))
            prefix = self._shared_prefix([groups[i] for i in packed])
            skip = len(prefix[0])
            if packed:
                with use_attention(self.model, SEGMENTS):
                    for batch in self._flat_batches(packed, [self._packed_length(groups[i], skip)
                                                             for i in packed]):
                        scored = self._score_flat([groups[i] for i in batch], prefix)
                        for i, scores in zip(batch, scored, strict=True):
                            results[i] = scores
                            if on_done:
                                on_done(i, scores)
            pairs = [(i, j) for i in plain for j in range(len(groups[i].continuations))]
            pairs.sort(key=lambda p: -(len(groups[p[0]].context) + len(groups[p[0]].continuations[p[1]])))
            plain_scores: dict[tuple[int, int], Scored] = {}
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start : start + self.batch_size]
                scored = self.score_plain([(groups[i].context, groups[i].continuations[j]) for i, j in chunk])
                plain_scores.update(zip(chunk, scored, strict=True))
            for i in plain:
                results[i] = [plain_scores[(i, j)] for j in range(len(groups[i].continuations))]
                if on_done:
                    on_done(i, results[i])
        return results, truncated  # type: ignore[return-value]

    @torch.inference_mode()
    def score_plain(self, pairs: list[tuple[list[int], list[int]]]) -> list[Scored]:
        """Each (context, continuation) alone, right-padded into one batch, as lm-eval's HF backend."""
        inputs, spans = [], []
        for ctx, cont in pairs:
            inp = (ctx + cont)[-(self.max_length + 1) :][:-1]
            inputs.append(inp)
            spans.append(len(inp))
        width = max(spans)
        ids = torch.zeros((len(inputs), width), dtype=torch.long)
        for r, inp in enumerate(inputs):
            ids[r, : len(inp)] = torch.tensor(inp)
        # Right padding needs no mask for a causal model: real tokens never see the padding.
        logits = self.model(input_ids=ids.to(self.device)).logits.float()
        out = []
        for r, (_, cont) in enumerate(pairs):
            n = len(cont)
            rows = logits[r, spans[r] - n : spans[r]]
            out.append(self._score_rows(rows, cont))
        return out

    # -- packed path ------------------------------------------------------------------------------
    @torch.inference_mode()
    def _shared_prefix(self, groups: list[ChoiceGroup]
                       ) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
        """The context tokens every group starts with (MMLU's description line, a fixed few-shot block),
        run once; each group keeps at least its last context token of its own."""
        if len(groups) < 2 or self.window is not None:
            return [], []
        first = groups[0].context
        n = min(len(g.context) for g in groups) - 1
        for g in groups[1:]:
            m = 0
            while m < n and g.context[m] == first[m]:
                m += 1
            n = m
        if n < _MIN_SHARED_PREFIX:
            return [], []
        from transformers import DynamicCache

        from tunescope.evaluate.kvcache import prefilled_layers

        prefix_cache = DynamicCache()
        _decoder(self.model)(input_ids=torch.tensor([first[:n]], device=self.device), cache=prefix_cache,
                             use_cache=True)
        return list(first[:n]), [(k.clone(), v.clone())
                                 for k, v in prefilled_layers(prefix_cache, num_layers(self.model), n)]

    @staticmethod
    def _packed_length(g: ChoiceGroup, skip: int = 0) -> int:
        return len(g.context) - skip + sum(len(c) - 1 for c in g.continuations)

    def _flat_batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive documents (longest first) per forward, up to `batch_size` times the first one's
        length in tokens: the memory of a padded batch of `batch_size` rows, without the padding."""
        batches: list[list[int]] = []
        budget = used = 0
        for i, length in zip(order, lengths, strict=True):
            if batches and used + length <= budget:
                batches[-1].append(i)
                used += length
            else:
                batches.append([i])
                budget, used = self.batch_size * length, length
        return batches

    @torch.inference_mode()
    def _score_flat(
        self,
        groups: list[ChoiceGroup],
        prefix: tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]] = ([], []),
    ) -> list[list[Scored]]:
        """Score documents laid end to end in one row: each context attends to itself (after the
        shared prefix, if any); each choice's continuation to its context and itself."""
        skip = len(prefix[0])
        tokens: list[int] = []
        positions: list[int] = []
        segments: list[Segment] = []
        owners = []  # per document, per choice: (row positions whose outputs predict it, its tokens)
        for g in groups:
            ctx_start = len(tokens)
            tokens += g.context[skip:]
            positions += range(skip, len(g.context))
            ctx_end = len(tokens)
            segments.append(Segment(ctx_start, ctx_end))
            spans = []
            for cont in g.continuations:
                body = cont[:-1]  # its last token is predicted, never read
                start = len(tokens)
                tokens += body
                positions += range(len(g.context), len(g.context) + len(body))
                if body:
                    segments.append(Segment(start, len(tokens), reads=[(ctx_start, ctx_end)]))
                spans.append(([ctx_end - 1, *range(start, start + len(body))], cont))
            owners.append(spans)
        plan = SegmentPlan(segments, prefix_kv=prefix[1])
        hidden = _decoder(self.model)(
            input_ids=torch.tensor([tokens], device=self.device),
            position_ids=torch.tensor([positions], device=self.device),
            use_cache=False,
            segment_plan=plan,
        ).last_hidden_state[0]
        # Run the output layer only on the positions that predict continuation tokens.
        at = [i for spans in owners for predict_at, _ in spans for i in predict_at]
        logits = _output_logits(self.model, hidden[torch.tensor(at, device=self.device)]).float()
        out, offset = [], 0
        for spans in owners:
            scores = []
            for _, cont in spans:
                scores.append(self._score_rows(logits[offset : offset + len(cont)], cont))
                offset += len(cont)
            out.append(scores)
        return out

    @staticmethod
    def _score_rows(logits: torch.Tensor, cont: list[int]) -> Scored:
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(cont, device=logits.device)
        greedy = bool((logprobs.argmax(dim=-1) == target).all())
        return Scored(float(logprobs.gather(1, target[:, None]).sum()), greedy)
