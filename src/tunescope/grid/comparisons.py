"""Which pairs of grid columns are tested, and the stratified test of each (see analysis/stratified.py).

Compared: every cell against its model's base evaluation, and every two cells that differ in exactly
one axis (LoRA against DoRA at the same model and data size, 500 against 2000 examples with the same
method, ...). Each comparison uses the task's headline metric. Items are paired within a seed and only
when they are the same item in both columns (same doc_id and the same question and gold answer); the
base evaluation, which has no seed, is paired with each seed of the cell. Holm's correction runs over
all the comparisons of the report.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from tunescope.analysis import stats
from tunescope.analysis.compare import item_fingerprint
from tunescope.analysis.stratified import cmh_paired, paired_strata
from tunescope.store.scores import finite_float, sample_key


def item_outcomes(evaluation, task: str, metric: str) -> dict:
    """{(doc_id, item fingerprint): 0|1} of one evaluation's per-item records (a group over its subjects)."""
    samples = stats.with_group_samples(evaluation.results, evaluation.samples).get(task) or []
    key = sample_key(metric)
    out = {}
    for rec in samples:
        value = finite_float((rec.get("metrics") or {}).get(key))
        if value is not None and value in (0.0, 1.0) and rec.get("doc_id") is not None:
            out.setdefault((rec["doc_id"], item_fingerprint(rec)), int(value))
    return out


def pairs_to_compare(cells: Mapping[str, Mapping], model_key: str | None) -> list[tuple[str, str, str]]:
    """(column A, column B, why) — base vs each cell, then cells one axis apart."""
    out = []
    for cell, axes in cells.items():
        out.append((f"base:{axes.get(model_key, '') if model_key else ''}", cell, "against its base model"))
    for a, b in itertools.combinations(cells, 2):
        diff = [k for k in cells[a] if cells[a][k] != cells[b][k]]
        if len(diff) == 1:
            out.append((a, b, f"{diff[0]}: {cells[a][diff[0]]} → {cells[b][diff[0]]}"))
    return out


def compare_pair(a_by_seed: dict[int, dict], b_by_seed: dict[int, dict]) -> dict:
    """The stratified test of B against A, with the per-seed differences."""
    strata, detail = paired_strata(a_by_seed, b_by_seed)
    if not strata:
        return {"available": False, "reason": "no seed with the same items in both"}
    test = cmh_paired(strata)
    deltas = [d["delta_points"] for d in detail.values()]
    return {**test, "delta_points": finite_float(np.mean(deltas)), "per_seed": detail,
            "n_items": sum(d["n"] for d in detail.values()),
            "same_sign_every_seed": bool(all(d > 0 for d in deltas) or all(d < 0 for d in deltas))}


def holm_verdicts(comparisons: list[dict], alpha: float) -> None:
    adjusted = stats.holm([c["test"].get("p_value") if c["test"].get("available") else None
                           for c in comparisons])
    for comp, p in zip(comparisons, adjusted, strict=True):
        t = comp["test"]
        t["p_holm"] = p
        t["significant"] = p is not None and p < alpha
        het = t.get("heterogeneity_p")
        t["seeds_disagree"] = het is not None and het < alpha
        if not t.get("available"):
            t["verdict"] = "not tested"
        elif t["significant"]:
            t["verdict"] = "exceeds seed noise" + (" (but the seeds disagree)" if t["seeds_disagree"] else "")
        else:  # not rejected: the data do not say the columns differ, nor that they are the same
            t["verdict"] = "inconclusive"
