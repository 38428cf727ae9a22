"""Few-shot example selection, draw for draw the same as lm-eval's samplers.

lm-eval keeps one `random.Random(fewshot_seed)` per task and draws for the documents in order, so the
examples of document i depend on every draw before it: the sampler here is stateful the same way
and must be called once per evaluated document, in document order.

- "default": `rnd.sample(pool, n)`; when the few-shot split is the evaluated split it draws n + 1,
  drops the evaluated document (by equality) and keeps the first n — and if duplicates of that
  document were drawn, redraws n from the pool without it.
- "first_n": the first n of the pool in order (MMLU's dev examples), minus the evaluated document.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tunescope.core.errors import UserError

Doc = dict[str, Any]


class FewshotSampler:
    def __init__(self, pool: Sequence[Doc], *, seed: int | None, kind: str = "default",
                 exclude_eval_doc: bool = False):
        if kind not in ("default", "first_n"):
            raise UserError(f"unknown few-shot sampler '{kind}' (known: default, first_n)",
                            where="fewshot_config")
        self.pool = list(pool)
        self.rnd = random.Random(seed)
        self.kind = kind
        self.exclude_eval_doc = exclude_eval_doc

    def sample(self, n: int, eval_doc: Doc | None = None) -> list[Doc]:
        if n == 0:
            return []
        if not self.pool:
            raise UserError("no documents to draw few-shot examples from", where="num_fewshot")
        exclude = eval_doc if self.exclude_eval_doc else None
        if self.kind == "first_n":
            pool = [x for x in self.pool if x != exclude] if exclude is not None else self.pool
            if n > len(pool):
                raise UserError(f"{n} few-shot examples requested but only {len(pool)} are available",
                                where="num_fewshot")
            return list(pool[:n])
        available = len(self.pool) - (exclude is not None and exclude in self.pool)
        if n > available:
            raise UserError(f"{n} few-shot examples requested but only {available} are available",
                            where="num_fewshot")
        if exclude is None:
            return self.rnd.sample(self.pool, n)
        drawn = [x for x in self.rnd.sample(self.pool, n + 1) if x != exclude][:n]
        if len(drawn) < n:
            drawn = self.rnd.sample([x for x in self.pool if x != exclude], n)
        return drawn
