"""Most frequent content words of a set of texts, as a table and as a picture.

Content words are lowercase alphabetic tokens that are not English stop words (scikit-learn's
``ENGLISH_STOP_WORDS``); numbers are dropped because in maths problems they are incidental, not topics.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from tunescope.report.plots import figure_png

from ._util import new_figure, unavailable

# Runs of letters, optionally with inner apostrophes ("don't"), not glued to digits: numbers and
# number-like tokens ("3rd", "10am", "x2") are dropped whole rather than leaving "rd" / "am" behind.
_WORD = re.compile(r"(?<![a-z0-9])[a-z]+(?:'[a-z]+)*(?![a-z0-9])")
_MIN_LEN = 2


def content_words(text: str) -> list[str]:
    """Lowercase content words of one text, in order.

    Removed: stop words, numbers, one-letter tokens and contractions; possessive "'s" is stripped.
    """
    words = []
    for tok in _WORD.findall(text.lower().replace("\u2019", "'")):
        if tok.endswith("'s"):  # possessive: "john's" counts as "john"
            tok = tok[:-2]
        # Other contractions ("don't", "they'll") are function words the stop list does not cover.
        if "'" not in tok and len(tok) >= _MIN_LEN and tok not in ENGLISH_STOP_WORDS:
            words.append(tok)
    return words


def word_frequencies(texts: Iterable[str]) -> dict[str, int]:
    """Content-word counts over all texts, most frequent first (ties alphabetical, so deterministic)."""
    counts = Counter(w for t in texts for w in content_words(t or ""))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def top_words(texts: Iterable[str], k: int = 20) -> dict[str, Any]:
    """Top-``k`` content words with counts, share of all content words, and document frequency.

    Returns ``{"available", "k", "n_texts", "n_content_words", "n_distinct", "top": [{"word",
    "count", "share", "doc_count"}]}``.
    """
    texts = [t or "" for t in texts]
    if not texts:
        return unavailable("no texts")
    freqs = word_frequencies(texts)
    total = sum(freqs.values())
    if total == 0:
        return unavailable("no content words (only stop words or numbers)", n_texts=len(texts))
    doc_counts = Counter(w for t in texts for w in set(content_words(t)))
    top = [
        {"word": w, "count": c, "share": c / total, "doc_count": doc_counts[w]}
        for w, c in list(freqs.items())[:k]
    ]
    return {"available": True, "k": k, "n_texts": len(texts), "n_content_words": total,
            "n_distinct": len(freqs), "top": top}


def wordcloud_backend() -> str:
    """``"wordcloud"`` when the optional package is installed, else ``"matplotlib"`` (bar chart)."""
    try:
        import wordcloud  # noqa: F401
    except ImportError:
        return "matplotlib"
    return "wordcloud"


def wordcloud_png(
    freqs: Mapping[str, float], width: int = 800, height: int = 400, seed: int = 0, max_words: int = 100
) -> bytes:
    """PNG bytes of a word cloud of ``freqs`` (deterministic for a given ``seed``).

    Uses the ``wordcloud`` package when installed; otherwise draws a horizontal bar chart of the 25
    most frequent words with matplotlib. ``wordcloud_backend()`` says which one will be used.
    """
    items = [(w, float(c)) for w, c in freqs.items() if c and c > 0]
    if items and wordcloud_backend() == "wordcloud":
        import io

        from wordcloud import WordCloud

        cloud = WordCloud(width=width, height=height, background_color="white", random_state=seed,
                          max_words=max_words, prefer_horizontal=0.9)
        image = cloud.generate_from_frequencies(dict(items)).to_image()
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    return _bar_chart_png(items, width, height)


def _bar_chart_png(items: list[tuple[str, float]], width: int, height: int) -> bytes:
    top = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:25]
    fig = new_figure(width / 100, height / 100)
    ax = fig.add_subplot()
    if top:
        words, counts = zip(*reversed(top), strict=True)  # largest bar at the top
        ax.barh(range(len(words)), counts, color="#4c72b0")
        ax.set_yticks(range(len(words)), labels=words, fontsize=8)
        ax.set_xlabel("count")
    else:
        ax.text(0.5, 0.5, "no words", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    return figure_png(fig, tight=False)
