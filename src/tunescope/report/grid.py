"""grid.html (self-contained, same CSP as report.html), grid.md and grid.json for an experiment grid.

The data comes from `tunescope.grid.aggregate.analyse_grid`; this module only draws the per-axis plots
and renders the templates with the report package's jinja2 environments and filters.
"""

from __future__ import annotations

import re
from pathlib import Path

from tunescope.report.render import jsonable, template_env, write_images, write_page

GRID_IMAGE_DIR = "grid_images"


def axis_png(plot: dict) -> bytes | None:
    """The primary score against one axis, a line per combination of the other axes, ±1 SE bars; the base
    models' scores as dashed lines."""
    from tunescope.report.plots import figure_png, plt

    series = [s for s in plot["series"] if s["x"]]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    positions = {v: i for i, v in enumerate(plot["values"])}
    for s in series:
        xs = s["x"] if plot["numeric"] else [positions[v] for v in s["x"]]
        ax.errorbar(xs, [100 * m for m in s["mean"]], yerr=[100 * (e or 0) for e in s["se"]], marker="o",
                    capsize=3, label=s["label"])
    for label, value in plot["bases"].items():
        ax.axhline(100 * value, ls="--", lw=1, color="#8c96a3")
        ax.annotate(label.replace("base:", "base ").strip(), (0.01, 100 * value),
                    xycoords=("axes fraction", "data"), fontsize=7, color="#5b6470", va="bottom")
    if not plot["numeric"]:
        ax.set_xticks(range(len(plot["values"])), labels=[str(v)[-30:] for v in plot["values"]])
    ax.set_xlabel(plot["axis"])
    ax.set_ylabel(f"{plot['task']} {plot['metric'].split(',')[0]} (%)\nmean over seeds ± 1 SE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figure_png(fig)


def _image_key(axis: str) -> str:
    return "axis_" + re.sub(r"[^A-Za-z0-9_]+", "_", axis)


def render_grid(data: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    images = {}
    for plot in data.get("axis_plots", []):
        png = axis_png(plot)
        if png:
            plot["image"] = _image_key(plot["axis"])
            images[plot["image"]] = png
    plain = jsonable(data)
    paths = {"html": out_dir / "grid.html", "md": out_dir / "grid.md", "json": out_dir / "grid.json"}
    write_page(paths, plain, images, write_images(out_dir, images, GRID_IMAGE_DIR),
               lambda links: template_env(False).get_template("grid.md.j2").render(d=plain, images=links),
               lambda uris: template_env(True).get_template("grid.html.j2").render(d=plain, images=uris))
    return paths
