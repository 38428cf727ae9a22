"""Render the analysis dictionary as report.md, report.html (self-contained) and report.json.

Model text is untrusted: the HTML template autoescapes everything, and images are inline data URIs,
so the page loads nothing from anywhere and runs no script.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from tunescope.report.plots import loss_curves_png, to_data_uri, token_accuracy_png


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.{digits}f}%"


def num(x, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.{digits}g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def signed(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _env() -> Environment:
    env = Environment(loader=PackageLoader("tunescope.report", "templates"),
                      autoescape=select_autoescape(["html", "j2.html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, num=num, signed=signed)
    return env


def images_for(data: dict) -> dict[str, str]:
    """Data-URI images: plots made here plus any PNGs the analysis produced (word clouds, maps)."""
    images = {}
    for key, png in (("loss_curves", loss_curves_png(data.get("curves", {}), data.get("smoothed"))),
                     ("token_accuracy", token_accuracy_png(data.get("curves", {})))):
        if png:
            images[key] = to_data_uri(png)
    for key, png in data.get("_images", {}).items():
        images[key] = to_data_uri(png)
    return images


def _jsonable(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def render_all(data: dict, out_dir: Path) -> dict[str, Path]:
    from tunescope.runio import write_text_atomic

    env = _env()
    images = images_for(data)
    paths = {"html": out_dir / "report.html", "md": out_dir / "report.md", "json": out_dir / "report.json"}
    plain = _jsonable(data)
    write_text_atomic(paths["json"], json.dumps(plain, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text_atomic(paths["md"], env.get_template("report.md.j2").render(d=plain, images={}))
    write_text_atomic(paths["html"], env.get_template("report.html.j2").render(d=plain, images=images))
    return paths
