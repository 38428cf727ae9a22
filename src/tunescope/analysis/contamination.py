"""Overlap between the text a model trained on and the text it is scored on.

Two checks, both on normalised text (lowercase, punctuation removed, runs of whitespace folded: the
normalisation of lm-evaluation-harness's decontamination):

- **n-gram overlap** (default 13 words, after the GPT-3 paper): an evaluated item is *flagged* when any
  of its word n-grams also occurs in a training example. For each flagged item the check names the
  training example sharing the most n-grams with it and the longest word span the two have in common.
  N-grams never cross the parts of a document (question / answer, context / each ending), so two texts
  are not joined into a span that neither contains.
- **duplicates**: the same question asked twice, compared on the first part of each document (a training
  question, a GSM8K or MMLU question, a HellaSwag context): identical normalised texts (exact) and near
  copies, whose candidates come from MinHash signatures and locality-sensitive hashing (``datasketch``)
  on word shingles and are kept when the Jaccard similarity of their shingles reaches the threshold
  (0.8). Within the training data, and between the training data and each other split.

A document is a list of text parts (``item_parts`` picks them from an evaluation document). The n-gram
index hashes every training n-gram to one 64-bit number (numpy, vectorised) and keeps the sorted hashes,
so a lookup is a binary search; a hash match is confirmed on the words themselves before it is reported.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np

NORMALISATION = "lowercase, punctuation removed, whitespace folded, as lm-eval's decontamination normalises"
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# Between two parts of a document; the two sides use different marks so a span never runs across one.
ITEM_BREAK, TRAIN_BREAK = "|", "¦"
# Words shown on each side of a span in the report.
CONTEXT_WORDS = 25


@dataclass(frozen=True)
class OverlapSettings:
    ngram: int = 13
    near_duplicate_threshold: float = 0.8
    num_perm: int = 64
    # LSH bands × rows per band (≤ num_perm): a pair at Jaccard 0.8 becomes a candidate with probability
    # 1 - (1 - 0.8**4)**16 > 0.999; candidates are then kept only on their exact Jaccard similarity.
    lsh_bands: int = 16
    lsh_rows: int = 4
    shingle: int = 5
    examples: int = 5  # examples kept per kind of duplicate


def normalise(text: str) -> list[str]:
    """The words of `text`, lowercased, with punctuation removed."""
    return _PUNCTUATION.sub("", str(text).lower()).split()


def item_parts(doc: Mapping[str, Any]) -> list[str]:
    """The text of an evaluation document that the model sees: a HellaSwag context (``query``) and its
    endings, an MMLU question and its choices, a GSM8K question (its answer is never shown)."""
    head = doc.get("query", doc.get("question", doc.get("ctx")))
    parts = [str(head)] if head is not None else []
    choices = doc.get("choices", doc.get("endings"))
    if isinstance(choices, list):
        parts += [str(c) for c in choices]
    return parts


Words = list[list[str]]  # a document as the normalised words of each of its parts


def normalise_docs(docs: Sequence[Sequence[str]]) -> list[Words]:
    return [[normalise(p) for p in parts] for parts in docs]


class _Corpus:
    """Documents as one array of word ids, with the document and part of every position."""

    def __init__(self, words_per_doc: Sequence[Words], vocab: dict[str, int], grow: bool):
        flat = [w for parts in words_per_doc for words in parts for w in words]
        # Unknown words of a corpus that does not grow the vocabulary are -1: no n-gram holding one can match.
        ids = [vocab.setdefault(w, len(vocab)) for w in flat] if grow else [vocab.get(w, -1) for w in flat]
        part_lengths = [len(words) for parts in words_per_doc for words in parts]
        parts_per_doc = [len(parts) for parts in words_per_doc]
        self.words = words_per_doc
        self.ids = np.asarray(ids, dtype=np.int64)
        self.part_of = np.repeat(np.arange(len(part_lengths)), part_lengths)
        doc_of_part = np.repeat(np.arange(len(words_per_doc)), parts_per_doc)
        self.doc_of = doc_of_part[self.part_of] if len(part_lengths) else np.empty(0, np.int64)

    def ngram_hashes(self, n: int, multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hash, document) of every n-gram inside one part whose words are all known."""
        if self.ids.size < n:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(self.ids, n)
        valid = (self.part_of[: windows.shape[0]] == self.part_of[n - 1:]) & (windows.min(axis=1) >= 0)
        with np.errstate(over="ignore"):  # the hash is arithmetic modulo 2**64
            hashes = (windows[valid].astype(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)
        return hashes, self.doc_of[: windows.shape[0]][valid]

    def text(self, d: int, brk: str) -> list[str]:
        out: list[str] = []
        for i, words in enumerate(self.words[d]):
            out += ([brk] if i else []) + words
        return out


def _around(words: list[str], start: int, size: int) -> dict[str, str]:
    """A span with up to CONTEXT_WORDS words on either side, for the report's highlight."""
    lo, hi = max(0, start - CONTEXT_WORDS), min(len(words), start + size + CONTEXT_WORDS)
    return {"before": ("… " if lo else "") + " ".join(words[lo:start]),
            "span": " ".join(words[start:start + size]),
            "after": " ".join(words[start + size:hi]) + (" …" if hi < len(words) else "")}


class NgramIndex:
    """Every word n-gram of the training documents, hashed; `overlaps` checks items against it."""

    def __init__(self, train_docs: Sequence[Words], n: int = 13):
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.vocab: dict[str, int] = {}
        self.train = _Corpus(train_docs, self.vocab, grow=True)
        # Odd 64-bit multipliers, fixed so the same texts always give the same hashes.
        self.multipliers = (np.random.default_rng(0).integers(1, 2**63, size=n, dtype=np.uint64) * 2 + 1)
        hashes, docs = self.train.ngram_hashes(n, self.multipliers)
        order = np.argsort(hashes, kind="stable")  # equal hashes stay in document order: the first wins
        self.hashes, first = np.unique(hashes[order], return_index=True)
        self.docs = docs[order][first]

    def overlaps(self, items: Sequence[Words]) -> list[dict[str, Any]]:
        """For each item sharing an n-gram with the training documents: its index, the training document
        sharing most n-grams with it, how many n-grams they share, and their longest common span."""
        corpus = _Corpus(items, self.vocab, grow=False)
        hashes, item_of = corpus.ngram_hashes(self.n, self.multipliers)
        if not self.hashes.size or not hashes.size:
            return []
        pos = np.minimum(np.searchsorted(self.hashes, hashes), self.hashes.size - 1)
        hit = self.hashes[pos] == hashes
        pairs, counts = np.unique(np.stack([item_of[hit], self.docs[pos[hit]]], axis=1), axis=0,
                                  return_counts=True)
        best: dict[int, tuple[int, int]] = {}
        for (item, train), count in zip(pairs.tolist(), counts.tolist(), strict=True):
            if item not in best or count > best[item][1]:
                best[item] = (train, count)
        out = []
        for item, (train, count) in sorted(best.items()):
            a, b = corpus.text(item, ITEM_BREAK), self.train.text(train, TRAIN_BREAK)
            m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
            if m.size < self.n:  # a hash collision, not a shared n-gram
                continue
            out.append({"index": item, "train_index": train, "shared_ngrams": count, "span_words": m.size,
                        "item": _around(a, m.a, m.size), "train": _around(b, m.b, m.size)})
        return out


def _shingles(words: list[str], k: int) -> set[bytes]:
    if len(words) <= k:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)}


def _signatures(docs: Sequence[Words], s: OverlapSettings) -> tuple[list[str], list]:
    from datasketch import MinHash

    texts = [" ".join(parts[0]) if parts else "" for parts in docs]
    # CRC-32 hashes a shingle ~50× faster than datasketch's default SHA-1 and is as stable across processes;
    # MinHash's random permutations do the mixing.
    sigs = MinHash.bulk([_shingles(t.split(), s.shingle) for t in texts], num_perm=s.num_perm, seed=1,
                        hashfunc=zlib.crc32)
    return texts, sigs


class DuplicateIndex:
    """Exact and near duplicates of the training questions (MinHash LSH from datasketch)."""

    def __init__(self, train_docs: Sequence[Words], settings: OverlapSettings = OverlapSettings()):
        from datasketch import MinHashLSH

        self.s = settings
        self.texts, self.sigs = _signatures(train_docs, settings)
        self.first_of: dict[str, int] = {}
        for i, t in enumerate(self.texts):
            self.first_of.setdefault(t, i)
        self.lsh = MinHashLSH(num_perm=settings.num_perm, params=(settings.lsh_bands, settings.lsh_rows))
        with self.lsh.insertion_session() as session:
            for i, sig in enumerate(self.sigs):
                if self.first_of[self.texts[i]] == i:  # one entry per distinct text
                    session.insert(i, sig, check_duplication=False)

    def _near(self, text: str, sig, skip: int | None) -> tuple[int, float] | None:
        best = None
        shingles = None
        for j in self.lsh.query(sig):
            if j == skip or self.texts[j] == text:
                continue
            shingles = shingles or _shingles(text.split(), self.s.shingle)
            other = _shingles(self.texts[j].split(), self.s.shingle)
            sim = len(shingles & other) / len(shingles | other)
            if sim >= self.s.near_duplicate_threshold and (best is None or sim > best[1]):
                best = (j, sim)
        return best

    def _summary(self, found: list[dict[str, Any]], n: int) -> dict[str, Any]:
        exact = [f for f in found if f["kind"] == "exact"]
        near = [f for f in found if f["kind"] == "near"]
        return {"n": n, "exact": len(exact), "near": len(near),
                "indices": sorted({f["index"] for f in found}),
                "examples": (exact[: self.s.examples] + near[: self.s.examples])}

    def within(self) -> dict[str, Any]:
        """Training documents that repeat an earlier one exactly, or nearly copy another."""
        found = []
        for i, (t, sig) in enumerate(zip(self.texts, self.sigs, strict=True)):
            if not t:  # no question text: nothing to compare
                continue
            if self.first_of[t] != i:
                found.append({"kind": "exact", "index": i, "train_index": self.first_of[t], "similarity": 1.0,
                              "text": t, "train_text": t})
            elif (near := self._near(t, sig, skip=i)) is not None and near[0] < i:
                found.append({"kind": "near", "index": i, "train_index": near[0],
                              "similarity": round(near[1], 3), "text": t, "train_text": self.texts[near[0]]})
        return self._summary(found, len(self.texts))

    def against(self, docs: Sequence[Words]) -> dict[str, Any]:
        """Documents of another split that copy a training document exactly or nearly."""
        texts, sigs = _signatures(docs, self.s)
        found = []
        for i, (t, sig) in enumerate(zip(texts, sigs, strict=True)):
            if not t:
                continue
            if t in self.first_of:
                found.append({"kind": "exact", "index": i, "train_index": self.first_of[t], "similarity": 1.0,
                              "text": t, "train_text": t})
            elif (near := self._near(t, sig, skip=None)) is not None:
                found.append({"kind": "near", "index": i, "train_index": near[0],
                              "similarity": round(near[1], 3), "text": t, "train_text": self.texts[near[0]]})
        return self._summary(found, len(texts))


def check(train_docs: Sequence[Sequence[str]], evaluated: Mapping[str, Sequence[Sequence[str]]],
          settings: OverlapSettings = OverlapSettings(), doc_ids: Mapping[str, Sequence[Any]] | None = None,
          ) -> dict[str, Any]:
    """The whole check: each evaluated set (a task's items, the validation split, the held-out problems)
    against the training documents, by n-gram and by duplicates, and duplicates within training.

    A document is a list of text parts; `doc_ids` names the items of a set (a task's ``doc_id``s), by
    default their position."""
    train_words = normalise_docs(train_docs)
    ngrams = NgramIndex(train_words, settings.ngram)
    dups = DuplicateIndex(train_words, settings)
    sets = {}
    for name, raw in evaluated.items():
        docs = normalise_docs(raw)
        ids = list(doc_ids[name]) if doc_ids and name in doc_ids else list(range(len(docs)))
        flagged = ngrams.overlaps(docs)
        for f in flagged:
            f["doc_id"] = ids[f["index"]]
        duplicates = dups.against(docs)
        duplicates["doc_ids"] = [ids[i] for i in duplicates.pop("indices")]
        sets[name] = {"n": len(docs), "n_flagged": len(flagged),
                      "share": len(flagged) / len(docs) if docs else None,
                      "flagged_doc_ids": [f["doc_id"] for f in flagged], "flagged": flagged,
                      "duplicates": duplicates}
    within = dups.within()
    within.pop("indices")
    return {"ngram": settings.ngram, "normalisation": NORMALISATION,
            "near_duplicate_threshold": settings.near_duplicate_threshold, "num_perm": settings.num_perm,
            "shingle_words": settings.shingle, "train_examples": len(train_docs), "sets": sets,
            "within_train": within}
