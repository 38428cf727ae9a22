"""Log-likelihood of continuations given a context, for multiple-choice tasks.

Scores are those of lm-eval's HF backend: for a (context, continuation) pair tokenised by
`Encoder.encode_pair`, the model reads `(ctx + cont)[:-1]` and the score is the sum of the
log-softmax at the positions that predict the continuation tokens; `is_greedy` tells whether each
of them was the argmax.

Fast path ("packed"): the choices of one document share their context, so the context is run once
and every choice's continuation is appended after it in the same row, each one seeing the context
and itself only (a block attention mask, position ids restarting after the context). A single-
token continuation needs no tokens of its own at all: MMLU's four letters are read off one forward
of the question. Only the positions that predict continuation tokens go through the output layer.

Generic path ("plain"), used for truncated pairs and as the reference in tests: each pair alone,
exactly as lm-eval runs it, including left truncation to the context window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tunescope.evaluate.modelinfo import sliding_window

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
    """The model's output layer applied to selected hidden states (with logit soft-capping if the model uses it)."""
    logits = model.get_output_embeddings()(hidden)
    cfg = getattr(model.config, "text_config", None) or model.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _decoder(model):
    """The transformer body (everything before the output layer)."""
    return model.get_decoder()


def _supports_packing(model) -> bool:
    if not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        return False
    cfg = getattr(model.config, "text_config", None) or model.config
    # Models that scale logits in their head forward would need that applied by hand.
    return not any(getattr(cfg, a, None) not in (None, 1, 1.0) for a in ("logit_scale", "logits_scaling"))


class LoglikelihoodScorer:
    def __init__(self, model, *, batch_size: int, max_length: int):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.max_length = max_length
        self.device = next(model.parameters()).device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        window, _ = sliding_window(model)
        self.window = window
        self.packing = _supports_packing(model)

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
            length = len(g.context) + sum(len(c) - 1 for c in g.continuations)
            if too_long or not self.packing or length > self.max_length or (self.window and length > self.window):
                plain.append(i)
            else:
                packed.append(i)
        with torch.inference_mode():
            # Longest first, as lm-eval orders its requests.
            packed.sort(key=lambda i: -(len(groups[i].context) + sum(len(c) - 1 for c in groups[i].continuations)))
            prefix = self._shared_prefix([groups[i] for i in packed])
            skip = len(prefix[0])
            for rows in self._pack_rows(packed, [self._packed_length(groups[i], skip) for i in packed]):
                batch = [i for row in rows for i in row]
                scored = self._score_packed([[groups[i] for i in row] for row in rows], prefix)
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
    def _shared_prefix(self, groups: list[ChoiceGroup]) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
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
        from tunescope.evaluate.kvcache import layer_kv_pairs

        out = _decoder(self.model)(input_ids=torch.tensor([first[:n]], device=self.device), use_cache=True)
        return list(first[:n]), [(k.clone(), v.clone()) for k, v in layer_kv_pairs(out.past_key_values)]

    @staticmethod
    def _packed_length(g: ChoiceGroup, skip: int = 0) -> int:
        return len(g.context) - skip + sum(len(c) - 1 for c in g.continuations)

    def _pack_rows(self, order: list[int], lengths: list[int]) -> list[list[list[int]]]:
        """Batches of up to `batch_size` rows; each row holds as many documents as fit in the length of
        the batch's longest one (first fit, longest first), so short documents fill the room that
        padding would otherwise waste."""
        batches: list[list[list[int]]] = []
        rows: list[list[int]] = []
        room: list[int] = []
        capacity = 0
        for i, length in zip(order, lengths, strict=True):
            slot = next((r for r, free in enumerate(room) if free >= length), None)
            if slot is None and len(rows) == self.batch_size:
                batches.append(rows)
                rows, room = [], []
            if not rows:
                capacity = length
            if slot is None or not room:
                rows.append([i])
                room.append(capacity - length)
            else:
                rows[slot].append(i)
                room[slot] -= length
        if rows:
            batches.append(rows)
        return batches

    @torch.inference_mode()
    def _score_packed(
        self,
        rows: list[list[ChoiceGroup]],
        prefix: tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]] = ([], []),
    ) -> list[list[Scored]]:
        """Score the documents of one batch; returns their scores in row-major document order."""
        skip = len(prefix[0])
        layouts = [self._row_layout(row, skip) for row in rows]
        width = max(len(lay[0]) for lay in layouts)
        n = len(rows)
        ids = torch.zeros((n, width), dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        doc = torch.full((n, width), -1, dtype=torch.long)  # -1: padding
        segment = torch.full((n, width), -2, dtype=torch.long)  # -1: context, j: choice j
        for r, (tokens, positions, docs, segs, _) in enumerate(layouts):
            k = len(tokens)
            ids[r, :k], pos[r, :k] = torch.tensor(tokens), torch.tensor(positions)
            doc[r, :k], segment[r, :k] = torch.tensor(docs), torch.tensor(segs)
        past = None
        one_doc_per_row = all(len(row) == 1 for row in rows)
        if skip:
            from transformers import DynamicCache

            # The shared prefix's keys/values, seen by every row (expand: no copy until the layer concatenates).
            past = DynamicCache()
            for layer_idx, (k, v) in enumerate(prefix[1]):
                past.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), layer_idx)
            mask, positions = self._block_mask(doc, segment, skip), pos.to(self.device)
        elif one_doc_per_row and all(len(c) == 1 for row in rows for g in row for c in g.continuations):
            # Contexts only, right-padded: plain causal attention is exact (real tokens never see the
            # padding) and takes SDPA's fastest kernel, as in lm-eval's own forward.
            mask, positions = None, None
        else:
            mask, positions = self._block_mask(doc, segment, 0), pos.to(self.device)
        hidden = _decoder(self.model)(
            input_ids=ids.to(self.device), attention_mask=mask, position_ids=positions,
            past_key_values=past, use_cache=past is not None,
        ).last_hidden_state
        # Gather the hidden states that predict continuation tokens; run the head on those only.
        sel_rows, sel_cols, owners = [], [], []
        for r, (row, lay) in enumerate(zip(rows, layouts, strict=True)):
            for g, start in zip(row, lay[4], strict=True):
                ctx_end = start + len(g.context) - skip  # one past the last context token in the row
                offset = ctx_end
                spans = []
                for cont in g.continuations:
                    predict_at = [ctx_end - 1] + list(range(offset, offset + len(cont) - 1))
                    sel_rows += [r] * len(cont)
                    sel_cols += predict_at
                    spans.append((len(sel_rows) - len(cont), len(sel_rows), cont))
                    offset += len(cont) - 1
                owners.append(spans)
        logits = _output_logits(self.model, hidden[torch.tensor(sel_rows), torch.tensor(sel_cols)]).float()
        return [[self._score_rows(logits[a:b], cont) for a, b, cont in spans] for spans in owners]

    @staticmethod
    def _row_layout(row: list[ChoiceGroup], skip: int):
        """Tokens, positions, document and segment ids of one packed row, and where each document starts.

        Each document is its context (minus the `skip` cached prefix tokens) followed by every choice's
        continuation without its last token (which is predicted, never read)."""
        tokens, positions, docs, segs, starts = [], [], [], [], []
        for d, g in enumerate(row):
            starts.append(len(tokens))
            tokens += g.context[skip:]
            positions += range(skip, len(g.context))
            docs += [d] * (len(g.context) - skip)
            segs += [-1] * (len(g.context) - skip)
            for j, cont in enumerate(g.continuations):
                body = cont[:-1]
                tokens += body
                positions += range(len(g.context), len(g.context) + len(body))
                docs += [d] * len(body)
                segs += [j] * len(body)
        return tokens, positions, docs, segs, starts

    def _block_mask(self, doc: torch.Tensor, segment: torch.Tensor, prefix: int) -> torch.Tensor:
        """Additive 4D mask: a token sees earlier tokens of its own document that are context or its own
        choice, plus the `prefix` cached columns in front; padding sees column 0 only (never read)."""
        q_doc, k_doc = doc[:, :, None], doc[:, None, :]
        q_seg, k_seg = segment[:, :, None], segment[:, None, :]
        idx = torch.arange(doc.shape[1])
        causal = idx[None, :, None] >= idx[None, None, :]
        visible = causal & (q_doc == k_doc) & (k_doc >= 0) & ((k_seg == -1) | (k_seg == q_seg))
        pad_q = doc < 0
        if prefix:
            front = (~pad_q)[:, :, None].expand(-1, -1, prefix)
            visible = torch.cat([front, visible], dim=2)
        visible[:, :, 0] |= pad_q
        mask = torch.zeros(visible.shape, dtype=self.dtype)
        mask.masked_fill_(~visible, torch.finfo(self.dtype).min)
        return mask[:, None].to(self.device)

    @staticmethod
    def _score_rows(logits: torch.Tensor, cont: list[int]) -> Scored:
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(cont, device=logits.device)
        greedy = bool((logprobs.argmax(dim=-1) == target).all())
        return Scored(float(logprobs.gather(1, target[:, None]).sum()), greedy)
