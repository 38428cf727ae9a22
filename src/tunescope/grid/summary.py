"""The grid report's derived sections: one plot series per axis, cost per cell, and the conclusions.

Conclusions are sentences filled in from figures computed in `analysis` and `comparisons` only; each
names the figures it rests on, so nothing is claimed that the tables do not show.
"""

from __future__ import annotations

import statistics

from tunescope.report.formatting import pct


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _primary_row(data: dict) -> dict | None:
    p = data.get("primary") or {}
    return next((r for r in data["rows"] if r["task"] == p.get("task") and r["metric"] == p.get("metric")),
                None)


def axis_series(data: dict) -> list[dict]:
    """Per axis: the primary score against the axis' values, one line per combination of the other axes."""
    row = _primary_row(data)
    if row is None:
        return []
    out = []
    for axis in data["axes"]:
        values = data["axis_values"][axis]
        others = [a for a in data["axes"] if a != axis]
        series: dict[tuple, dict] = {}
        for cell, axes in data["cells"].items():
            label = tuple((a, axes[a]) for a in others)
            s = series.setdefault(label, {"label": ", ".join(f"{a}={v}" for a, v in label) or "all cells",
                                          "x": [], "mean": [], "se": []})
            score = row["cells"].get(cell)
            if score is None:
                continue
            s["x"].append(axes[axis])
            s["mean"].append(score["mean"])
            s["se"].append(score["se"])
        out.append({"axis": axis, "task": row["task"], "metric": row["metric"], "values": values,
                    "numeric": all(_is_number(v) for v in values), "series": list(series.values()),
                    "bases": {c: v["mean"] for c, v in row["bases"].items()}})
    return out


def cell_costs(data: dict) -> list[dict]:
    """Per cell: training cost and wall time (mean per seed), and cost per point gained over the base."""
    row = _primary_row(data)
    out = []
    for cell, axes in data["cells"].items():
        runs = [r for r in data["runs"] if r["cell"] == cell and r["status"] == "complete"]
        costs = [r["cost_usd"] for r in runs if r.get("cost_usd") is not None]
        walls = [r["wall_s"] for r in runs if r.get("wall_s") is not None]
        entry = {"cell": cell, "runs": len(runs),
                 "cost_usd_per_seed": statistics.fmean(costs) if costs else None,
                 "cost_usd_total": sum(costs) if costs else None,
                 "wall_s_per_seed": statistics.fmean(walls) if walls else None, "gain_points": None,
                 "cost_per_point": None}
        if row is not None and cell in row["cells"]:
            base = row["bases"].get(f"base:{axes.get('model.name', '')}" if "model.name" in axes else "base:")
            if base is not None:
                sign = 1 if row["higher_is_better"] else -1
                gain = sign * 100 * (row["cells"][cell]["mean"] - base["mean"])
                entry["gain_points"] = gain
                if gain > 0 and entry["cost_usd_per_seed"] is not None:
                    entry["cost_per_point"] = entry["cost_usd_per_seed"] / gain
        out.append(entry)
    return out


def conclusions(data: dict) -> list[dict]:
    out: list[dict] = []
    row = _primary_row(data)
    failed = data["failed"]
    if failed:
        out.append({"text": f"{len(failed)} of {len(data['runs'])} runs did not complete: "
                            + "; ".join(f"{r['run']} "
                                        f"({r['status']}{': ' + r['error'] if r.get('error') else ''})"
                                        for r in failed[:5]) + ("…" if len(failed) > 5 else ""),
                    "basis": ["runs"]})
    if row is None or not row["cells"]:
        out.append({"text": "No run of the grid has a tuned evaluation, so nothing is compared.",
                    "basis": ["rows"]})
        return out
    best = row["best"][0]
    b = row["cells"][best]
    base_txt = "; ".join(f"{c.removeprefix('base:') or 'base'} before tuning: {pct(v['mean'], 1)}"
                         for c, v in row["bases"].items())
    out.append({
        "text":
            f"Highest mean {row['task']} {row['metric']} of the cells: {best}, {pct(b['mean'], 1)} "
            f"± {pct(b['se'], 1)} "
            f"({'SE over ' + str(b['k']) + ' seeds' if b['uncertainty'] == 'seeds' else 'item SE, one seed'})"
            + (f"; {base_txt}." if base_txt else "."),
        "basis": ["rows", "base_columns"]})
    sds = [(c, v["sd"]) for c, v in row["cells"].items() if v.get("sd") is not None]
    if sds:
        lo, hi = min(sds, key=lambda x: x[1]), max(sds, key=lambda x: x[1])
        out.append({"text": f"Seed noise on {row['task']}: the SD across seeds ranges from {100 * lo[1]:.1f} "
                            f"points ({lo[0]}) to {100 * hi[1]:.1f} points ({hi[0]}).", "basis": ["rows"]})
    comps = [c for c in data["comparisons"] if c["test"].get("available")]
    sig = [c for c in comps if c["test"]["significant"]]
    if comps and not sig:
        out.append({"text": f"None of the {len(comps)} paired comparisons exceeds seed noise: each is "
                            f"inconclusive (stratified test, Holm-adjusted p ≥ {data['alpha']}; smallest "
                            f"{min(c['test']['p_holm'] for c in comps):.3g}).", "basis": ["comparisons"]})
    for c in sig[:8]:
        t = c["test"]
        out.append({"text": f"{c['task']}: {c['b_label']} vs {c['a_label']} ({c['why']}): "
                            f"{t['delta_points']:+.1f} points (mean over seeds), p (Holm) = "
                            f"{t['p_holm']:.3g}: {t['verdict']}.",
                    "basis": ["comparisons"]})
    costs = [c for c in data["costs"] if c["cost_per_point"] is not None]
    if costs:
        cheapest = min(costs, key=lambda c: c["cost_per_point"])
        out.append({"text": f"Lowest training cost per point gained over the base on {row['task']}: "
                            f"{cheapest['cell']}, ${cheapest['cost_per_point']:.4f} per point "
                            f"({cheapest['gain_points']:+.1f} points for "
                            f"${cheapest['cost_usd_per_seed']:.4f} per seed).", "basis": ["costs"]})
    elif data["costs"]:
        out.append({"text": f"No cell gained over its base model on {row['task']}, so no cost per point "
                            "is given.", "basis": ["costs"]})
    return out
