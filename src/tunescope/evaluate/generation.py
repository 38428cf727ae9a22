"""Text generation with continuous batching.

Semantics (what lm-eval's HF backend produces for the same request):
- greedy: the argmax token at every step (sampling: softmax(logits / temperature), per-request seeded);
- a row ends at an EOS token (not part of the text), after `max_new_tokens`, or once one of its stop
  strings appears in its generated text (never in the prompt);
- the answer is the generated tokens decoded with special tokens skipped, cut at the first
  occurrence of each stop string in turn (lm-eval's post-processing).

Mechanics: up to `batch_size` sequences run at once, each in a slot of a preallocated KV cache
(`kvcache.SlotCache`). Each prompt is prefilled alone (no padding: its numbers do not depend on
what else is in the batch), its cache copied into a free slot, and decoding continues for all
running rows with one forward per step. A finished row frees its slot for the next waiting prompt
at once, so no compute is spent on rows that are done. Requests with identical prompts (samples
for self-consistency) share one prefill.

Prompt-lookup drafting (greedy rows): a row also feeds the tokens that followed the last earlier
occurrence of its current n-gram and keeps those the model confirms. A decoding step with few
tokens costs about the same whatever it feeds (it is bound by reading the weights and the cache),
so rows take several tokens per step instead of one; a per-step token budget keeps large batches
from turning compute-bound. The attention (`attention.GROUPED`) reads grouped key/value heads in
place, so verifying several positions per row does not copy the cache.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from tunescope.core.modelinfo import num_layers, sliding_window
from tunescope.evaluate.attention import GROUPED, supports_own_attention, use_attention
from tunescope.evaluate.kvcache import SlotCache, prefilled_layers
from tunescope.evaluate.tokenization import Encoder

log = logging.getLogger(__name__)


@dataclass
class GenRequest:
    prompt_ids: list[int]
    until: list[str]
    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0


@dataclass
class GenResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" | "length"


def postprocess(text: str, until: list[str]) -> str:
    """Cut at the first occurrence of each stop string, in order (lm-eval's rule)."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS ids that end a row: the generation config's (what `model.generate` stops on) plus the
    tokenizer's."""
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


# Prompt-lookup drafting: at most this many draft tokens per row and step, and at most this many
# tokens (fed + drafted) per step over all rows (8 rows: 3 drafts each; 16 rows: 1; 32 rows: none).
# DRAFT_MAX_ROWS applies only to models that cannot use the engine's grouped attention.
DRAFT_TOKENS = 8
DRAFT_BUDGET = 32
DRAFT_MAX_ROWS = 4


class PromptLookup:
    """Proposes the tokens that followed the previous occurrence of the text's last n-gram (n = 3, 2, 1)
    in the prompt or in what was generated so far. Indexes are updated per token, so a lookup is O(1)."""

    ORDERS = (3, 2, 1)

    def __init__(self, prompt_ids: list[int]):
        self.tokens: list[int] = []
        self.index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in self.ORDERS}
        self.follow: dict[int, int | None] = {n: None for n in self.ORDERS}
        for t in prompt_ids:
            self.append(t)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)
        for n in self.ORDERS:
            if end < n:
                continue
            key = tuple(self.tokens[end - n :])
            previous = self.index[n].get(key)
            self.follow[n] = previous  # where the text after the previous occurrence starts
            self.index[n][key] = end

    def draft(self, k: int) -> list[int]:
        for n in self.ORDERS:
            start = self.follow[n]
            if start is not None and start < len(self.tokens):
                return self.tokens[start : start + k]
        return []


@dataclass
class _Row:
    index: int
    request: GenRequest
    length: int  # tokens in the cache for this row
    next_token: int  # the newest token, not yet in the cache
    generated: list[int] = field(default_factory=list)
    text_checked: int = 0
    generator: torch.Generator | None = None
    lookup: PromptLookup | None = None


class Generator:
    """Runs a list of GenRequests through a causal LM; see the module docstring."""

    def __init__(self, model, tokenizer, *, batch_size: int, encoder: Encoder | None = None,
                 draft_tokens: int = DRAFT_TOKENS):
        self.model = model
        self.draft_tokens = max(0, int(draft_tokens))
        self.tokenizer = tokenizer
        self.encoder = encoder or Encoder(tokenizer)
        self.batch_size = max(1, int(batch_size))
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self.window, self.hybrid = sliding_window(model)
        self.own_attention = supports_own_attention(model)

    # -- public -----------------------------------------------------------------------------------
    def run(self, requests: list[GenRequest],
            on_done: Callable[[int, GenResult], None] | None = None) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        if not requests:
            return []
        # Longest prompt first, as lm-eval: the cache is sized by the first wave and the slowest
        # prefills happen while there is still work to overlap with.
        order = sorted(range(len(requests)), key=lambda i: (-len(requests[i].prompt_ids), i))
        # Room for the rejected draft tokens a verification step may write past a row's end.
        capacity = max(len(r.prompt_ids) + r.max_new_tokens for r in requests) + self.draft_tokens
        slots = min(self.batch_size, len(requests))
        cache = SlotCache(num_layers(self.model), slots, capacity)
        waiting = list(order)
        running: list[_Row] = []
        shared_prefill: dict[tuple[int, ...], tuple[int, torch.Tensor]] = {}
        remaining_by_prompt = Counter(tuple(requests[i].prompt_ids) for i in order)

        def finish(row: _Row, reason: str) -> None:
            ids = [t for t in row.generated if t not in self.eos_ids] if reason == "eos" else row.generated
            text = postprocess(self.encoder.decode(ids), row.request.until)
            result = GenResult(text=text, token_ids=ids, finish_reason=reason)
            results[row.index] = result
            if on_done is not None:
                on_done(row.index, result)

        with torch.inference_mode(), self._attention():
            while waiting or running:
                while waiting and len(running) < slots:
                    idx = waiting.pop(0)
                    row, done = self._admit(cache, running, idx, requests[idx], shared_prefill,
                                            remaining_by_prompt)
                    if done:
                        finish(row, done)
                        # The slot was never occupied by a running row; nothing to compact.
                        self._forget_slot(shared_prefill, len(running))
                        continue
                    running.append(row)
                if not running:
                    continue
                drafts = self._drafts(running)
                logits = self._decode_step(cache, running, drafts)
                firsts = self._pick(logits[:, 0], running)
                finished = []
                for pos, (row, draft) in enumerate(zip(running, drafts, strict=True)):
                    done = self._emit(row, self._verified(draft, firsts[pos], logits[pos]))
                    if done:
                        finish(row, done)
                        finished.append(pos)
                self._compact(cache, running, finished, shared_prefill)
        return [r for r in results]  # type: ignore[misc]

    # -- steps ----------------------------------------------------------------------------------
    def _admit(self, cache: SlotCache, running: list[_Row], idx: int, req: GenRequest,
               shared_prefill: dict, remaining_by_prompt: Counter) -> tuple[_Row, str | None]:
        """Start request `idx` in the next free slot and pick its first token; returns the row and why it
        finished already, if it did. A prompt already prefilled shares its cache instead of recomputing."""
        key = tuple(req.prompt_ids)
        slot = len(running)
        if key in shared_prefill and self._slot_still_has(running, shared_prefill[key][0], len(key)):
            src, last_logits = shared_prefill[key]
            cache.copy_slot(src, slot, len(key))
        else:
            last_logits = self._prefill(cache, slot, req.prompt_ids)
        remaining_by_prompt[key] -= 1
        if remaining_by_prompt[key] > 0:
            shared_prefill[key] = (slot, last_logits)
        else:
            shared_prefill.pop(key, None)
        row = _Row(index=idx, request=req, length=len(req.prompt_ids), next_token=-1)
        if req.do_sample:
            row.generator = torch.Generator(device="cpu").manual_seed(req.seed)
        elif self.draft_tokens:
            row.lookup = PromptLookup(req.prompt_ids)
        token = self._pick(last_logits.unsqueeze(0), [row])[0]
        return row, self._accept(row, token)

    @staticmethod
    def _verified(draft: list[int], first: int, row_logits: torch.Tensor) -> list[int]:
        """The tokens a decode step emits for one row: its picked token, or, with drafts, the drafts the
        model itself would have produced, then its own next token (what one-at-a-time greedy decoding
        gives)."""
        if not draft:
            return [first]
        predicted = row_logits[: len(draft) + 1].argmax(dim=-1).tolist()
        m = 0
        while m < len(draft) and draft[m] == predicted[m]:
            m += 1
        return draft[:m] + [predicted[m]]

    def _emit(self, row: _Row, emitted: list[int]) -> str | None:
        """Accept the emitted tokens in order; the reason the row finished, or None."""
        for token in emitted:
            row.length += 1  # the token fed before this one is now in the cache
            done = self._accept(row, token)
            if done:
                return done
        return None

    def _compact(self, cache: SlotCache, running: list[_Row], finished: list[int],
                 shared_prefill: dict) -> None:
        """Keep running rows in slots 0..n-1: move the last row into each finished row's slot."""
        for pos in sorted(finished, reverse=True):
            last = len(running) - 1
            self._forget_slot(shared_prefill, pos)
            if pos != last:
                cache.copy_slot(last, pos, running[last].length)
                self._move_slot(shared_prefill, last, pos)
                running[pos] = running[last]
            running.pop()

    def _attention(self):
        """Grouped-query attention that reads the cache in place, where the model allows it."""
        return use_attention(self.model, GROUPED) if self.own_attention else nullcontext()

    @staticmethod
    def _slot_still_has(running: list[_Row], slot: int, length: int) -> bool:
        return slot < len(running) and running[slot].length >= length

    @staticmethod
    def _move_slot(shared: dict, src: int, dst: int) -> None:
        for key, (slot, logits) in list(shared.items()):
            if slot == src:
                shared[key] = (dst, logits)

    @staticmethod
    def _forget_slot(shared: dict, slot: int) -> None:
        for key, (s, _) in list(shared.items()):
            if s == slot:
                del shared[key]

    def _prefill(self, cache: SlotCache, slot: int, prompt_ids: list[int]) -> torch.Tensor:
        """Run one prompt alone; store its keys/values in `slot`; return the last position's logits."""
        from transformers import DynamicCache

        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        # No config: every layer keeps all its positions. Given the config, transformers keeps only the
        # last `sliding_window` positions of a sliding layer, and copying those into the slot would put
        # them at positions 0..window-1; the decoding mask (`_decode_mask`) applies the window instead.
        scratch = DynamicCache()
        out = self.model(input_ids=ids, cache=scratch, use_cache=True, logits_to_keep=1)
        cache.store_prefill(slot, prefilled_layers(scratch, cache.num_layers, len(prompt_ids)))
        return out.logits[0, -1].float()

    def _drafts(self, running: list[_Row]) -> list[list[int]]:
        """Draft continuations from earlier text (prompt lookup), within a per-step token budget: with
        few rows running a step is bound by reading the weights, so verifying drafts is nearly free;
        with many rows it is bound by compute, so drafts shrink."""
        if not self.draft_tokens or (not self.own_attention and len(running) > DRAFT_MAX_ROWS):
            # Without our grouped attention, verifying several positions makes transformers' attention
            # copy the grouped key/value heads of the whole cache per layer; with many rows that costs
            # more than the drafts save.
            return [[] for _ in running]
        per_row = min(self.draft_tokens, max(0, DRAFT_BUDGET // len(running) - 1))
        drafts = []
        for row in running:
            left = row.request.max_new_tokens - len(row.generated) - 1
            k = min(per_row, left)
            drafts.append(row.lookup.draft(k) if row.lookup is not None and k > 0 else [])
        return drafts

    def _decode_step(self, cache: SlotCache, running: list[_Row], drafts: list[list[int]]) -> torch.Tensor:
        """One forward for all running rows: each feeds its newest token plus its draft tokens.
        Returns logits [rows, 1 + longest draft, vocab]."""
        rows = len(running)
        width = 1 + max(len(d) for d in drafts)
        write_pos = torch.tensor([r.length for r in running], dtype=torch.long, device=self.device)
        positions = write_pos[:, None] + torch.arange(width, device=self.device)[None, :]
        span = int(write_pos.max().item()) + width
        cache.prepare_decode(rows, positions, span)
        # Rows with shorter drafts are padded by repeating their last token; those positions lie past
        # the row's end, are never accepted, and are overwritten before they can be seen.
        feed = [[r.next_token] + d + ([d[-1] if d else r.next_token] * (width - 1 - len(d)))
                for r, d in zip(running, drafts, strict=True)]
        input_ids = torch.tensor(feed, dtype=torch.long, device=self.device)
        mask = self._decode_mask(positions, span)
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=mask,
            cache=cache,
            use_cache=True,
            logits_to_keep=width,
        )
        cache.check_decoded()
        return out.logits.float()

    def _decode_mask(self, positions: torch.Tensor, span: int):
        """Additive 4D mask [rows, 1, width, span]: the query at position p sees columns 0..p."""
        cols = torch.arange(span, device=self.device)
        visible = cols[None, None, :] <= positions[:, :, None]
        full = self._additive(visible)
        if self.window is None:
            return full
        sliding = self._additive(visible & (cols[None, None, :] > positions[:, :, None] - self.window))
        if self.hybrid:
            return {"full_attention": full, "sliding_attention": sliding}
        return sliding

    def _additive(self, visible: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(visible.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~visible, torch.finfo(self.dtype).min)
        return mask[:, None]

    def _pick(self, logits: torch.Tensor, rows: list[_Row]) -> list[int]:
        """Next token per row: argmax, or a seeded sample for rows that sample."""
        if not any(r.request.do_sample for r in rows):
            return logits.argmax(dim=-1).tolist()
        tokens = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            req = row.request
            if not req.do_sample:
                continue
            scores = logits[i] / max(req.temperature, 1e-5)
            if req.top_k and req.top_k > 0:
                kth = torch.topk(scores, min(req.top_k, scores.numel())).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            if req.top_p < 1.0:
                sorted_p, sorted_i = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < req.top_p
                probs = torch.zeros_like(probs).scatter_(0, sorted_i[keep], sorted_p[keep])
            tokens[i] = int(torch.multinomial(probs.cpu(), 1, generator=row.generator).item())
        return tokens

    def _accept(self, row: _Row, token: int) -> str | None:
        """Append `token` to the row; return the finish reason if the row is done."""
        row.generated.append(token)
        row.next_token = token
        if row.lookup is not None:
            row.lookup.append(token)
        if token in self.eos_ids:
            return "eos"
        if row.request.until and self._hit_stop(row):
            return "stop"
        if len(row.generated) >= row.request.max_new_tokens:
            return "length"
        return None

    def _hit_stop(self, row: _Row) -> bool:
        # Only the generated text is searched, and only from where the previous search could not
        # yet have seen a complete stop string.
        text = self.encoder.decode(row.generated)
        longest = max(len(s) for s in row.request.until)
        start = max(0, row.text_checked - longest)
        row.text_checked = len(text)
        return any(s and s in text[start:] for s in row.request.until)
