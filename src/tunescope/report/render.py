"""Render the analysis dictionary as report.md, report.html (self-contained) and report.json.

Model text is untrusted: the HTML environment autoescapes everything (no ``|safe`` anywhere), the page
carries a Content-Security-Policy that forbids scripts, and images are inline data URIs, so the page
loads nothing from anywhere and runs no script. In Markdown, model text goes into table cells with
``<``, ``>``, ``&`` and ``|`` escaped, or into fenced code blocks whose fence is longer than any run
of backticks in the text.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, Undefined

IMAGE_DIR = "report_images"


def _missing(x) -> bool:
    return x is None or isinstance(x, Undefined) or (isinstance(x, float) and math.isnan(x))


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if _missing(x) else f"{x * 100:.{digits}f}%"


def pm(x: float | None, se: float | None, digits: int = 2) -> str:
    """``33.51% ± 1.30%`` (a fraction and its standard error, as lm-evaluation-harness prints them)."""
    if _missing(x):
        return "—"
    return pct(x, digits) + ("" if _missing(se) else f" ± {se * 100:.{digits}f}%")


def num(x, digits: int = 4) -> str:
    if _missing(x):
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.{digits}g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def signed(x: float | None, digits: int = 2) -> str:
    return "—" if _missing(x) else f"{x:+.{digits}f}"


def pval(p: float | None) -> str:
    if _missing(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def peq(p: float | None) -> str:
    """``=0.012`` or ``<0.001``, to follow a ``p``."""
    text = pval(p)
    return text if text.startswith("<") else f"={text}" if text != "—" else " n/a"


def mdcell(x) -> str:
    """Text safe inside a Markdown table cell or list item: one line, no raw HTML tags, no column breaks."""
    text = "" if _missing(x) else str(x)
    # "<" only starts raw HTML when a tag name, "/", "!" or "?" follows; "p<0.001" stays readable.
    # Brackets are escaped so model text cannot become a link or an (external) image.
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)
    text = text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")
    return re.sub(r"\s*\n\s*", " ⏎ ", text).strip()


def mdblock(x, lang: str = "text") -> str:
    """A fenced code block that the text cannot close early (fence longer than any backtick run)."""
    text = "" if _missing(x) else str(x)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def flops(x: float | None) -> str:
    """A FLOP/s figure in the unit that keeps it readable: ``218 GFLOP/s``, ``989 TFLOP/s``."""
    if _missing(x):
        return "—"
    return f"{x / 1e12:.3g} TFLOP/s" if x >= 1e12 else f"{x / 1e9:.3g} GFLOP/s"


FILTERS = {"pct": pct, "pm": pm, "num": num, "signed": signed, "pval": pval, "peq": peq, "mdcell": mdcell,
           "mdblock": mdblock, "flops": flops}


@functools.lru_cache(maxsize=2)
def _env(html: bool) -> Environment:
    env = Environment(loader=PackageLoader("tunescope.report", "templates"), autoescape=html,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def images_for(data: dict) -> dict[str, bytes]:
    """PNG bytes: plots made here plus any PNGs the analysis produced (word clouds, the cluster map)."""
    # matplotlib is imported only when drawing, so the CLI's tables (which use the formatters) start fast.
    from tunescope.report.plots import (
        accuracy_by_png,
        loss_curves_png,
        scores_png,
        task_curves_png,
        token_accuracy_png,
    )

    images: dict[str, bytes] = {}
    candidates = [
        ("loss_curves", lambda: loss_curves_png(data.get("curves", {}), data.get("smoothed"),
                                                data.get("learning_curve"))),
        ("task_curves", lambda: task_curves_png(data.get("task_curves") or {})),
        ("token_accuracy", lambda: token_accuracy_png(data.get("curves", {}))),
    ]
    ev = data.get("evaluation") or {}
    for key, make in candidates:
        png = make()
        if png:
            images[key] = png
    if ev.get("available") and ev.get("rows"):
        png = scores_png([ev["rows"][i] for i in ev.get("headline", range(len(ev["rows"])))])
        if png:
            images["scores"] = png
    for t in (data.get("errors") or {}).get("tasks", []):
        png = accuracy_by_png(t.get("by_steps") or [], f"{t['task']}: accuracy by number of gold steps",
                              "calculator steps in the gold solution")
        if png:
            images[f"steps_{t['task']}"] = png
    images.update(data.get("_images", {}))
    return images


def _jsonable(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _write_images(out_dir: Path, images: dict[str, bytes]) -> dict[str, str]:
    """PNG files beside report.md (Markdown viewers do not show data URIs); returns relative links."""
    img_dir = out_dir / IMAGE_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.png"):
        if old.stem not in images:
            old.unlink()
    links = {}
    for key, png in images.items():
        (img_dir / f"{key}.png").write_bytes(png)
        links[key] = f"{IMAGE_DIR}/{key}.png"
    return links


def render_all(data: dict, out_dir: Path) -> dict[str, Path]:
    from tunescope.runio import write_text_atomic

    out_dir = Path(out_dir)
    images = images_for(data)
    paths = {"html": out_dir / "report.html", "md": out_dir / "report.md", "json": out_dir / "report.json"}
    plain = _jsonable(data)
    write_text_atomic(paths["json"], json.dumps(plain, indent=2, ensure_ascii=False, default=str) + "\n")
    md_links = _write_images(out_dir, images)
    write_text_atomic(paths["md"], _env(False).get_template("report.md.j2").render(d=plain, images=md_links))
    uris = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in images.items()}
    write_text_atomic(paths["html"], _env(True).get_template("report.html.j2").render(d=plain, images=uris))
    return paths


def render_compare(data: dict, out_dir: Path) -> dict[str, Path]:
    """comparison.html / comparison.md / comparison.json for a multi-run comparison (see tunescope.compare)."""
    from tunescope.runio import write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "comparison.html", "md": out_dir / "comparison.md",
             "json": out_dir / "comparison.json"}
    plain = _jsonable(data)
    write_text_atomic(paths["json"], json.dumps(plain, indent=2, ensure_ascii=False, default=str) + "\n")
    images = {}
    if data.get("task_curves"):
        from tunescope.report.plots import compare_task_curves_png

        images = {f"task_curve_{e['task']}": png for e in data["task_curves"] if (png := compare_task_curves_png(e))}
    md_links = _write_images(out_dir, images) if images else {}
    write_text_atomic(paths["md"], _env(False).get_template("compare.md.j2").render(d=plain, images=md_links))
    uris = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in images.items()}
    write_text_atomic(paths["html"], _env(True).get_template("compare.html.j2").render(d=plain, images=uris))
    return paths
