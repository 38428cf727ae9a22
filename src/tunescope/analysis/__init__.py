"""Analysis layer: pure functions from run records to plain, JSON-serialisable dictionaries.

Modules (one idea each): ``curves`` (learning curves), ``stats`` (paired base-vs-tuned statistics),
``errors`` (GSM8K error taxonomy), ``text`` (frequent words, word cloud), ``embeddings`` (sentence
vectors, offline MiniLM or TF-IDF fallback), ``clusters`` (problem clusters and their 2-D map),
``outliers`` (unusual and highest-loss examples). Images inside result dicts are base64 PNG text. Every
verdict carries the numbers behind it; where a verdict cannot be computed the result is
``{"available": False, "reason": ...}`` rather than an exception.
"""
