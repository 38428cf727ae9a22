"""The "Contamination" section of the presentation dictionary: every figure written out for both templates."""

from __future__ import annotations

from typing import Any

from tunescope.report.formatting import pct, peq, pm, pval, signed


def _share(n_flagged: int, n: int, share: float | None) -> str:
    return f"{n_flagged} of {n} ({pct(share, 1)})"


def _score(s: dict[str, Any]) -> str:
    return f"{pm(s['value'], s['stderr'])} (n={s['n']})"


def _pairs(top: list[dict]) -> list[dict]:
    return [{"doc_id": f["doc_id"], "train_index": f["train_index"], "span_words": f["span_words"],
             "shared_ngrams": f["shared_ngrams"], "item": f["item"], "train": f["train"]} for f in top]


def _duplicates(d: dict[str, Any]) -> dict[str, Any]:
    return {"exact": d["exact"], "near": d["near"],
            "examples": [{"kind": x["kind"], "index": x["index"], "train_index": x["train_index"],
                          "similarity": f"{x['similarity']:.2f}", "text": x["text"],
                          "train_text": x["train_text"]}
                         for x in d["examples"]]}


def _scores(s: dict[str, Any]) -> dict[str, Any]:
    if not s.get("available"):
        return {"available": False, "reason": s.get("reason")}
    rows = []
    for label, b in s["by_label"].items():
        rows.append({"label": label, "full": _score(b["full"]), "clean": _score(b["clean"]),
                     "flagged": _score(b["flagged"]), "difference": signed(b["difference_points"], 1)})
    t = s["test"]
    if t.get("available"):
        test = f"{t['method']}: p={pval(t['p_value'])}, Holm p{peq(t.get('p_holm'))}"
        if t.get("gain_flagged_points") is not None:
            test += (f" (base → tuned: flagged items {signed(t['gain_flagged_points'], 1)} points, clean "
                     f"{signed(t['gain_clean_points'], 1)})")
        verdict = "significant" if t.get("significant") else "not significant"
    else:
        test, verdict = f"not tested: {t.get('reason')}", None
    return {"available": True, "metric": s["metric"], "rows": rows, "test": test, "verdict": verdict,
            "badge": "bad" if verdict == "significant" else "neutral"}


def _evaluated(name: str, s: dict[str, Any]) -> dict[str, Any]:
    """A task's or split's row and details: flagged share, top items, duplicates."""
    return {"name": name, "share": _share(s["n_flagged"], s["n"], s["share"]), "n_flagged": s["n_flagged"],
            "detailed": bool(s["n_flagged"] or s["duplicates"]["examples"]), "top": _pairs(s["top"]),
            "duplicates": _duplicates(s["duplicates"])}


def present_contamination(c: dict[str, Any] | None) -> dict[str, Any]:
    if not c or not c.get("available"):
        return {"available": False,
                "reason": (c or {}).get("reason", "no contamination check in this report")}
    w = c["within_train"]
    return {
        "available": True, "found": c["found"],
        "method": (f"{c['ngram']}-gram overlap on normalised text ({c['normalisation']}) against the "
                   f"{c['train_examples']} training examples (question and answer); near duplicates: "
                   f"Jaccard ≥ {c['near_duplicate_threshold']:g} on {c['shingle_words']}-word shingles "
                   "(MinHash LSH)"),
        "seconds": f"{c['seconds']:.2f} s" if c.get("seconds") is not None else "—",
        "note": c.get("settings_note"),
        "tasks": [{**_evaluated(t["task"], t), "scores": _scores(t["scores"])} for t in c["tasks"]],
        "splits": [_evaluated(s["split"], s) for s in c["splits"]],
        "within_train": {"n": w["n"], **_duplicates(w)},
    }


CHECK_COLUMNS = ("evaluated", "items", "flagged", "share", "exact duplicates", "near duplicates")


def check_table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The rows `tunescope contamination` prints: each task (and split), its items, how many are flagged."""
    rows = []
    for kind, sets in (("task ", result["tasks"]), ("", result.get("splits", {}))):
        for name, s in sets.items():
            d = s["duplicates"]
            rows.append((f"{kind}{name}", str(s["n"]), str(s["n_flagged"]), pct(s["share"], 1),
                         str(d["exact"]), str(d["near"])))
    w = result["within_train"]
    rows.append((f"within the training data ({w['n']} examples)", "—", "—", "—", str(w["exact"]),
                 str(w["near"])))
    return rows


def flagged_lines(result: dict[str, Any], per_task: int) -> list[str]:
    """One line per flagged item (up to `per_task` per task, longest spans first): item, neighbour, span."""
    lines = []
    for name, s in result["tasks"].items():
        for f in sorted(s["flagged"], key=lambda f: -f["span_words"])[:per_task]:
            lines.append(f"{name} item {f['doc_id']} ~ training example {f['train_index']} "
                         f"({f['span_words']} words): {f['item']['span']}")
        if s["n_flagged"] > per_task:
            lines.append(f"{name}: {s['n_flagged'] - per_task} more flagged item(s)")
    return lines
