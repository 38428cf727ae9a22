"""Unusual examples: embedding-space outliers, and the examples the model finds hardest (highest loss)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tunescope.store.scores import finite_float

from ._util import unavailable
from .embeddings import Backend, Embedding, vectors_for

Method = Literal["isolation_forest", "lof"]
_SNIPPET = 300


def outliers(
    texts: Sequence[str],
    k: int = 10,
    method: Method = "isolation_forest",
    seed: int = 0,
    backend: Backend = "auto",
    embedding: Embedding | None = None,
) -> dict[str, Any]:
    """The ``k`` texts whose embeddings are most unlike the rest.

    ``isolation_forest`` (seeded, so deterministic) scores how easily a point is isolated by random
    splits; ``lof`` (Local Outlier Factor) compares a point's local density with its neighbours'.
    Scores are oriented so that higher = more anomalous (``-score_samples`` for the forest, the
    outlier factor for LOF, where about 1 is an inlier).

    Returns ``{"available", "method", "backend", "n", "k", "seed", "score_meaning", "outliers":
    [{"index", "score", "text"}]}`` sorted by score, most anomalous first.
    """
    texts = [t or "" for t in texts]
    n = len(texts)
    if n < 3:
        return unavailable(f"{n} text(s); need at least 3 to find outliers", n=n)
    emb, x = vectors_for(texts, embedding, backend, seed)
    if method == "isolation_forest":
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=200, random_state=seed).fit(x)
        scores = -forest.score_samples(x)
        meaning = "isolation-forest anomaly score (higher = easier to isolate = more unusual)"
    elif method == "lof":
        from sklearn.neighbors import LocalOutlierFactor

        lof = LocalOutlierFactor(n_neighbors=min(20, n - 1)).fit(x)
        scores = -lof.negative_outlier_factor_
        meaning = "local outlier factor (about 1 = inlier; higher = sparser than its neighbours)"
    else:
        raise ValueError(f"unknown outlier method {method!r}")
    # Stable sort on -score: ties keep input order, so the ranking is reproducible.
    order = np.argsort(-scores, kind="stable")[:k]
    return {
        "available": True,
        "method": method,
        "backend": emb.backend,
        "n": n,
        "k": k,
        "seed": seed,
        "score_meaning": meaning,
        "outliers": [{"index": int(i), "score": float(scores[i]), "text": texts[i][:_SNIPPET]}
                     for i in order],
    }


def highest_loss_examples(per_example_losses: Sequence[float], texts: Sequence[str],
                          k: int = 10) -> dict[str, Any]:
    """The ``k`` examples with the highest loss, with where they sit in the loss distribution.

    Missing / non-finite losses are skipped (and counted). Returns ``{"available", "n", "n_skipped",
    "k", "mean_loss", "median_loss", "p90_loss", "examples": [{"index", "loss", "z", "text"}]}``
    where ``z`` is the loss in standard deviations above the mean.
    """
    if len(per_example_losses) != len(texts):
        raise ValueError(f"{len(per_example_losses)} losses for {len(texts)} texts")
    valid = [(i, float(v)) for i, v in enumerate(per_example_losses) if finite_float(v) is not None]
    if not valid:
        return unavailable("no finite per-example losses", n=len(texts))
    losses = np.array([v for _, v in valid])
    mean = float(losses.mean())
    std = float(losses.std(ddof=1)) if losses.size > 1 else math.nan
    order = np.argsort(-losses, kind="stable")[:k]
    return {
        "available": True,
        "n": len(valid),
        "n_skipped": len(texts) - len(valid),
        "k": k,
        "mean_loss": mean,
        "median_loss": float(np.median(losses)),
        "p90_loss": float(np.quantile(losses, 0.9)),
        "examples": [
            {
                "index": valid[j][0],
                "loss": float(losses[j]),
                "z": finite_float((losses[j] - mean) / std) if std and math.isfinite(std) else None,
                "text": (texts[valid[j][0]] or "")[:_SNIPPET],
            }
            for j in order
        ],
    }
