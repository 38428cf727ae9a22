"""The short table printed at the end of a run (nanoGPT-style performance summary)."""

from __future__ import annotations

import json
from pathlib import Path

from tunescope.report.render import num, pct


def summary_rows(run_dir: Path) -> list[tuple[str, str]]:
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    rows: list[tuple[str, str]] = []
    for r in data.get("evaluation", {}).get("rows", []):
        base = f"{pct(r.get('base'))} ± {pct(r.get('base_stderr'))}" if "base" in r else "—"
        tuned = f"{pct(r.get('tuned'))} ± {pct(r.get('tuned_stderr'))}" if "tuned" in r else "—"
        rows.append((f"{r['task']} {r['label']} (n={r.get('n')}) base → tuned", f"{base} → {tuned}"))
    imp = data.get("training", {}).get("loss_improvement", {})
    for kind in ("train", "val"):
        if imp.get(kind, {}).get("available"):
            i = imp[kind]
            rows.append((f"{kind} loss first → best (improvement)",
                         f"{i['first']:.4f} → {i['best']:.4f} ({i['improvement_first_to_best_pct']:.1f}%)"))
    eff = data.get("efficiency") or {}
    if eff:
        rows.append(("tokens: supervised / non-padding / total",
                     f"{num(eff['tokens_supervised'])} / {num(eff['tokens_nonpad'])} / {num(eff['tokens_total'])}"))
        rows.append(("training steps (best step)", f"{eff['steps']} ({eff.get('best_step')})"))
        rows.append(("throughput (supervised tokens/s)", f"{eff['throughput_supervised_tps']:.1f}"))
        rows.append(("MFU", pct(eff.get("mfu"))))
        rows.append(("peak RSS", f"{eff['peak_rss_mb']:.0f} MB"))
    wall = data.get("overview", {}).get("wall_s")
    if wall is not None:
        rows.append(("wall time", f"{wall:.1f} s"))
    return rows
