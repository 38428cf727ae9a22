"""Is a difference between two grid cells larger than seed noise? A paired test stratified by seed.

Two cells of a grid answer the same items once per seed. Within a seed the two runs share the data
order and initialisation, so the items are paired there: `b_s` counts the items cell A got right and
cell B wrong under seed `s`, `c_s` the reverse. The seeds are strata, and the test is
Cochran–Mantel–Haenszel's over them. For matched pairs each stratum's CMH term reduces to its
discordant counts, so the statistic is

    X² = (|Σ_s (c_s − b_s)| − 1)² / Σ_s (b_s + c_s)      (1 df, continuity-corrected)

and, when fewer than 25 pairs are discordant in all, the exact conditional test: Σ c_s ~ Binomial(Σ (b_s +
c_s), ½) under "no difference". Concordant items carry no information and drop out; a seed that
shifts both cells alike (a lucky data order) cancels within its stratum. The Mantel–Haenszel estimate
of the common odds ratio for matched pairs is Σ c_s / Σ b_s.

What the strata do not absorb is a seed that helps one cell and not the other. `heterogeneity` tests
whether the seeds' discordance proportions c_s / (b_s + c_s) differ (chi-square, S − 1 df); a small p
there means the seeds disagree about the difference, and the report says so beside the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from tunescope.analysis.stats import EXACT_BELOW
from tunescope.store.scores import finite_float

METHOD = "Cochran–Mantel–Haenszel over seeds (paired discordant counts)"


def discordant_counts(a: Sequence[float], b: Sequence[float]) -> tuple[int, int]:
    """(items A right and B wrong, items A wrong and B right) for paired 0/1 outcomes."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes differ in length: {x.size} vs {y.size}")
    return int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))


def cmh_paired(strata: Sequence[tuple[int, int]]) -> dict:
    """The stratified test on per-stratum discordant counts [(b_s, c_s), ...]; see the module doc.

    Returns {"available", "method", "variant", "statistic", "p_value", "b", "c", "n_discordant",
    "odds_ratio", "heterogeneity_p", "strata"}.
    """
    counts = [(int(b), int(c)) for b, c in strata]
    if not counts:
        return {"available": False, "reason": "no seed with paired items"}
    b = sum(x for x, _ in counts)
    c = sum(y for _, y in counts)
    nd = b + c
    out = {"available": True, "method": METHOD, "b": b, "c": c, "n_discordant": nd, "strata": len(counts),
           "odds_ratio": finite_float(c / b) if b else None, "heterogeneity_p": heterogeneity(counts)}
    if nd == 0:
        return {**out, "variant": "no discordant pairs", "statistic": 0.0, "p_value": 1.0}
    if nd < EXACT_BELOW:
        p = sps.binomtest(c, nd, 0.5).pvalue
        return {**out, "variant": "exact conditional (binomial)", "statistic": float(min(b, c)),
                "p_value": finite_float(min(1.0, p))}
    stat = (abs(c - b) - 1.0) ** 2 / nd
    return {**out, "variant": "chi-square with continuity correction", "statistic": finite_float(stat),
            "p_value": finite_float(sps.chi2.sf(stat, df=1))}


def heterogeneity(counts: Sequence[tuple[int, int]]) -> float | None:
    """p-value of "every seed has the same discordance proportion" (None with fewer than two informative
    seeds)."""
    rows = [(b, c) for b, c in counts if b + c > 0]
    if len(rows) < 2:
        return None
    table = np.array(rows, dtype=float)
    if np.any(table.sum(axis=0) == 0):  # every discordant pair goes one way in every seed: no disagreement
        return 1.0
    return finite_float(sps.chi2_contingency(table, correction=False)[1])


def paired_strata(a_by_seed: dict[int, dict],
                  b_by_seed: dict[int, dict]) -> tuple[list[tuple[int, int]], dict]:
    """Discordant counts per shared seed from `{seed: {item: 0|1}}` maps; items pair within a seed.
    Also returns per-seed detail: n paired items and the difference B − A in points."""
    strata, detail = [], {}
    for seed in sorted(set(a_by_seed) & set(b_by_seed)):
        a, b = a_by_seed[seed], b_by_seed[seed]
        items = [i for i in a if i in b]
        if not items:
            continue
        x = [a[i] for i in items]
        y = [b[i] for i in items]
        strata.append(discordant_counts(x, y))
        detail[seed] = {"n": len(items), "delta_points": finite_float(100 * (np.mean(y) - np.mean(x)))}
    return strata, detail
