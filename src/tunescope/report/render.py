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
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, Undefined

from tunescope.report.formatting import missing, number, pct, peq, pm, pval, signed
from tunescope.report.presentation import present
from tunescope.store.layout import REPORT_HTML, REPORT_IMAGES, REPORT_JSON, REPORT_MD


def mdcell(x) -> str:
    """Text safe inside a Markdown table cell or list item: one line, no raw HTML tags, no column breaks."""
    text = "" if missing(x) else str(x)
    # "<" only starts raw HTML when a tag name, "/", "!" or "?" follows; "p<0.001" stays readable.
    # Brackets are escaped so model text cannot become a link or an (external) image.
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)
    text = text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")
    return re.sub(r"\s*\n\s*", " ⏎ ", text).strip()


def mdblock(x, lang: str = "text") -> str:
    """A fenced code block that the text cannot close early (fence longer than any backtick run)."""
    text = "" if missing(x) else str(x)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


# Markdown escaping for every template; number formatting for the comparison and grid templates (the run
# report gets its figures already written by presentation.py).
FILTERS = {"mdcell": mdcell, "mdblock": mdblock, "pm": pm, "signed": signed, "pval": pval, "pct": pct,
           "num": number, "peq": peq}


class ReportEnvironment(Environment):
    """Jinja's environment with two guards for pages people read.

    ``x.name`` on a dict reads the key ``name`` before any attribute, so a data key such as ``items`` or
    ``values`` means the data and never the dict method of that name. Names that are neither fail the render
    (StrictUndefined), and so does printing a callable, so no ``<built-in method ...>`` repr reaches a page.
    """

    def getattr(self, obj, attribute):  # noqa: A003 - jinja's hook is named getattr
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def no_callables(value):
    if callable(value) and not isinstance(value, Undefined):  # Undefined fails by itself when printed
        raise TypeError(f"a template printed a callable ({value!r}), not a value")
    return value


@functools.lru_cache(maxsize=2)
def template_env(html: bool) -> Environment:
    env = ReportEnvironment(loader=PackageLoader("tunescope.report", "templates"), autoescape=html,
                            trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined,
                            finalize=no_callables)
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


def jsonable(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def write_images(out_dir: Path, images: dict[str, bytes], folder: str = REPORT_IMAGES) -> dict[str, str]:
    """PNG files beside report.md (Markdown viewers do not show data URIs); returns relative links."""
    img_dir = out_dir / folder
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.png"):
        if old.stem not in images:
            old.unlink()
    links = {}
    for key, png in images.items():
        (img_dir / f"{key}.png").write_bytes(png)
        links[key] = f"{folder}/{key}.png"
    return links


def render_markdown(data: dict, images: dict[str, str]) -> str:
    """report.md from the analysis dictionary; `images` maps image names to links."""
    return template_env(False).get_template("report.md.j2").render(p=present(data), images=images)


def render_html(data: dict, images: dict[str, str]) -> str:
    """report.html from the analysis dictionary; `images` maps image names to data URIs."""
    return template_env(True).get_template("report.html.j2").render(p=present(data), images=images)


def write_page(paths: dict[str, Path], plain: dict, images: dict[str, bytes], md_links: dict[str, str],
               markdown: Callable[[dict[str, str]], str], html: Callable[[dict[str, str]], str]) -> None:
    """One page as JSON, Markdown (images linked as the PNG files written beside it) and HTML (images
    inline as data URIs, so the file stands alone)."""
    from tunescope.store.fileio import write_text_atomic

    write_text_atomic(paths["json"], json.dumps(plain, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text_atomic(paths["md"], markdown(md_links))
    uris = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in images.items()}
    write_text_atomic(paths["html"], html(uris))


def render_all(data: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    images = images_for(data)
    paths = {"html": out_dir / REPORT_HTML, "md": out_dir / REPORT_MD, "json": out_dir / REPORT_JSON}
    plain = jsonable(data)
    write_page(paths, plain, images, write_images(out_dir, images),
               lambda links: render_markdown(plain, links), lambda uris: render_html(plain, uris))
    return paths


def render_compare(data: dict, out_dir: Path) -> dict[str, Path]:
    """comparison.html / comparison.md / comparison.json for a multi-run comparison (see
    tunescope.analysis.compare)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "comparison.html", "md": out_dir / "comparison.md",
             "json": out_dir / "comparison.json"}
    plain = jsonable(data)
    images = {}
    if data.get("task_curves"):
        from tunescope.report.plots import compare_task_curves_png

        images = {f"task_curve_{e['task']}": png
                  for e in data["task_curves"] if (png := compare_task_curves_png(e))}
    md_links = write_images(out_dir, images) if images else {}
    write_page(paths, plain, images, md_links,
               lambda links: template_env(False).get_template("compare.md.j2").render(d=plain, images=links),
               lambda uris: template_env(True).get_template("compare.html.j2").render(d=plain, images=uris))
    return paths
