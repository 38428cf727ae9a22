"""Problem clusters: KMeans on sentence embeddings, named by class-based TF-IDF, drawn on a 2-D map.

Pipeline: ``embed`` (MiniLM or TF-IDF/SVD fallback, see ``embeddings``) → KMeans (``k`` chosen by
silhouette when not given) → c-TF-IDF names → UMAP (or PCA fallback) to 2-D → scatter PNG. Every
random step takes ``seed``, so the same texts and seed give the same clusters, names and map.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import silhouette_score

from tunescope.report.plots import figure_png

from ._util import b64, new_figure, unavailable
from .embeddings import Backend, Embedding, vectors_for
from .text import content_words

__all__ = ["Embedding", "cluster", "ctfidf", "project_2d", "silhouette_interpretation"]

Projection = Literal["auto", "umap", "pca"]
K_RANGE = (2, 8)
_N_TERMS = 5
_N_EXAMPLES = 3
_SNIPPET = 200


def ctfidf(docs_per_class: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Class-based TF-IDF: one row per class (all its documents joined), one column per term.

    ``weight(t, c) = tf(t, c) · log(1 + A / f(t))`` where ``tf`` is the count of term t in class c,
    ``A`` the average number of words per class and ``f(t)`` the count of t over all classes. Terms
    frequent in one class but rare overall score highest, which is what makes a good cluster name.
    Returns ``(terms, weights)``; terms are content words as in ``text.content_words``.
    """
    try:
        vec = CountVectorizer(analyzer=content_words)
        tf = vec.fit_transform(docs_per_class).toarray().astype(float)
    except ValueError:  # no content words at all
        return [], np.zeros((len(docs_per_class), 0))
    avg_words = tf.sum() / max(len(docs_per_class), 1)
    freq = tf.sum(axis=0)
    return list(vec.get_feature_names_out()), tf * np.log1p(avg_words / freq)


def _choose_k(x: np.ndarray, k_range: tuple[int, int], seed: int) -> tuple[int, dict[str, float]]:
    """The k in ``k_range`` with the highest silhouette score (ties: the smaller k)."""
    n_distinct = len(np.unique(x, axis=0))
    hi = min(k_range[1], x.shape[0] - 1, n_distinct)
    scores: dict[str, float] = {}
    for k in range(k_range[0], hi + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
        scores[str(k)] = float(silhouette_score(x, labels))
    best = max(scores, key=lambda k: (scores[k], -int(k)))
    return int(best), scores


def silhouette_interpretation(score: float) -> str:
    """Kaufman & Rousseeuw's reading of an average silhouette width."""
    if score > 0.70:
        return "strong structure"
    if score > 0.50:
        return "reasonable structure"
    if score > 0.25:
        return "weak structure, could be artificial"
    return "no substantial structure: clusters overlap, names describe tendencies, not separate groups"


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, … from largest to smallest (ties by first appearance), so cluster ids
    are stable presentation order rather than KMeans' arbitrary numbering."""
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    mapping = {int(ids[i]): new for new, i in enumerate(order)}
    return np.array([mapping[int(lab)] for lab in labels])


def project_2d(x: np.ndarray, method: Projection = "auto",
               seed: int = 0) -> tuple[np.ndarray, str, str | None]:
    """2-D coordinates for the map: UMAP (cosine) when installed and requested, otherwise PCA.

    Returns ``(coords, method_used, note)``; ``note`` says why UMAP was not used, if it was wanted.
    """
    note = None
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            note = "umap-learn not installed"
        else:
            n_neighbors = min(15, x.shape[0] - 1)
            try:
                with warnings.catch_warnings():
                    # "n_jobs overridden to 1 by setting random_state": exactly what we want.
                    warnings.simplefilter("ignore")
                    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, n_neighbors), metric="cosine",
                                        random_state=seed, init="spectral")
                    coords = reducer.fit_transform(x)
                if np.all(np.isfinite(coords)):
                    return np.asarray(coords, dtype=float), "umap", None
                note = "UMAP produced non-finite coordinates"
            except Exception as exc:  # UMAP fails on very small or degenerate inputs
                note = f"UMAP failed ({type(exc).__name__}: {exc})"
    from sklearn.decomposition import PCA

    dim = min(2, x.shape[0], x.shape[1])
    coords = (PCA(n_components=dim, random_state=seed).fit_transform(x) if dim >= 1
              else np.zeros((x.shape[0], 0)))
    if coords.shape[1] < 2:  # pad degenerate inputs so the map always has two axes
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    return coords, "pca", note


def _map_png(coords: np.ndarray, labels: np.ndarray, names: list[str], projection: str) -> bytes:
    fig = new_figure(7, 5)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(names))]
    for cid, name in enumerate(names):
        pts = coords[labels == cid]
        short = name if len(name) <= 40 else name[:37] + "..."
        ax.scatter(pts[:, 0], pts[:, 1], s=12, alpha=0.75, color=colors[cid],
                   label=f"{cid}: {short} ({len(pts)})")
    ax.set_title(f"problem clusters ({projection.upper()} projection)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    fig.tight_layout()
    return figure_png(fig, tight=False)


def _describe_clusters(texts: list[str], x: np.ndarray, labels: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Each cluster's size, its distinctive terms (c-TF-IDF) as its name, and the members nearest its
    centre."""
    n = len(texts)
    docs = [" ".join(t for t, lab in zip(texts, labels, strict=True) if lab == c) for c in range(k)]
    terms, weights = ctfidf(docs)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        top = np.argsort(-weights[c], kind="stable")[:_N_TERMS] if terms else []
        top_terms = [{"term": terms[i], "score": float(weights[c, i])} for i in top if weights[c, i] > 0]
        # Representative examples: the members closest to the cluster mean.
        centre = x[members].mean(axis=0)
        near = members[np.argsort(np.linalg.norm(x[members] - centre, axis=1), kind="stable")]
        clusters.append({
            "id": c,
            "size": int(members.size),
            "share": members.size / n,
            "name": ", ".join(t["term"] for t in top_terms[:3]) or f"cluster {c}",
            "top_terms": top_terms,
            "examples": [texts[i][:_SNIPPET] for i in near[:_N_EXAMPLES]],
        })
    return clusters


def cluster(
    texts: Sequence[str],
    k: int | None = None,
    seed: int = 0,
    backend: Backend = "auto",
    projection: Projection = "auto",
    k_range: tuple[int, int] = K_RANGE,
    embedding: Embedding | None = None,
    make_map: bool = True,
) -> dict[str, Any]:
    """Cluster ``texts`` (e.g. GSM8K questions) into named groups with a 2-D map.

    ``k=None`` picks k in ``k_range`` by silhouette score. Pass a precomputed ``embedding`` to reuse
    it (e.g. for outlier detection too). Images are base64 PNG text so the dict stays JSON-safe.

    Returns ``{"available", "n", "k", "backend", "projection", "projection_note", "k_selection":
    {"method", "silhouette_by_k"}, "silhouette", "silhouette_interpretation", "seed", "clusters":
    [{"id", "size", "share", "name", "top_terms": [{"term", "score"}], "examples"}], "labels",
    "coords", "map_png"}``. ``labels[i]`` is the cluster id of ``texts[i]`` (ids ordered by size);
    ``examples`` are the members nearest the cluster centre.
    """
    texts = [t or "" for t in texts]
    n = len(texts)
    if n < 3:
        return unavailable(f"{n} text(s); need at least 3 to cluster", n=n)
    emb, x = vectors_for(texts, embedding, backend, seed)
    n_distinct = len(np.unique(x, axis=0))
    if n_distinct < 2:
        return unavailable("all texts embed to the same vector", n=n, backend=emb.backend)

    if k is None:
        k, scores = _choose_k(x, k_range, seed)
        selection = {"method": "silhouette", "silhouette_by_k": scores}
    else:
        if not 2 <= k <= min(n - 1, n_distinct):
            return unavailable(f"k={k} impossible for {n} texts ({n_distinct} distinct embeddings)", n=n)
        selection = {"method": "given", "silhouette_by_k": {}}
    raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    labels = _relabel_by_size(raw)
    sil = float(silhouette_score(x, labels))

    clusters = _describe_clusters(texts, x, labels, k)
    coords, used, note = project_2d(x, projection, seed)
    out = {
        "available": True,
        "n": n,
        "k": k,
        "backend": emb.backend,
        "projection": used,
        "projection_note": note,
        "k_selection": selection,
        "silhouette": sil,
        "silhouette_interpretation": silhouette_interpretation(sil),
        "seed": seed,
        "clusters": clusters,
        "labels": labels.tolist(),
        "coords": np.round(coords, 6).tolist(),
        "map_png": None,
    }
    if make_map:
        out["map_png"] = b64(_map_png(coords, labels, [c["name"] for c in clusters], used))
    return out
