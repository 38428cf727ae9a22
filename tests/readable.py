"""Is a page written for people? Finds Python reprs, stray None / nan / inf and unfilled template syntax.

`unreadable(text, html=...)` lists what it found, each with the text around it; `assert_readable` fails with
that list. HTML is read as a person sees it: the visible text (and alt text), entities decoded, styles and
data URIs left out. Markdown and plain text are read with HTML entities decoded, since model text is escaped
there. Used on every page type in test_readable_pages.py and on the demo's own output.
"""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser
from pathlib import Path

CHECKS = (
    ("Python repr", re.compile(r"<built-in|<bound method|<function |object at 0x[0-9a-f]+|<class '")),
    ("unfilled template", re.compile(r"{{|}}|{%|%}|{#|#}|\bUndefined\b|jinja2\.")),
    # "None of the 4 comparisons ..." is a sentence; "max_steps=None", "(None)", "None%" are missing values.
    ("None where a value belongs", re.compile(r"(?<![A-Za-z_])None(?![A-Za-z_])(?!\s+[a-z])")),
    ("nan where a value belongs", re.compile(r"(?<![A-Za-z_])(?:nan|NaN|NAN)(?![A-Za-z_])")),
    ("inf where a value belongs", re.compile(r"(?<![A-Za-z_])-?(?:inf|Infinity|INF)(?![A-Za-z_])")),
)


class _VisibleText(HTMLParser):
    """The text a browser shows (and image alt text); nothing inside <style> or <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1
        for name, value in attrs:
            if name in ("alt", "title") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _VisibleText()
    parser.feed(page)
    parser.close()
    return "\n".join(parser.parts)


def unreadable(text: str, *, html: bool = False) -> list[str]:
    """What in ``text`` a person should not read, each as ``kind: …context…``; empty when the page is
    clean."""
    shown = visible_text(text) if html else html_lib.unescape(re.sub(r"\]\([^)]*\)", "]()", text))
    found = []
    for kind, pattern in CHECKS:
        for m in pattern.finditer(shown):
            context = shown[max(0, m.start() - 60): m.end() + 60].replace("\n", " ")
            found.append(f"{kind}: …{context}…")
    return found


def assert_readable(text: str, *, html: bool = False, where: str = "page") -> None:
    found = unreadable(text, html=html)
    assert not found, f"{where} is not written for people:\n" + "\n".join(found[:20])


def assert_files_readable(*paths: Path) -> None:
    """Each of the given report files (.html, .md, anything else as text) passes `assert_readable`."""
    for path in paths:
        path = Path(path)
        assert_readable(path.read_text(encoding="utf-8"), html=path.suffix == ".html", where=str(path))


def summary_table_text(data: dict) -> str:
    """The run's summary table as the CLI prints it (rich), from report.json's data."""
    from rich.console import Console
    from rich.table import Table

    from tunescope.report.summary_table import summary_rows

    table = Table()
    table.add_column("measure")
    table.add_column("value")
    for name, value in summary_rows(data):
        table.add_row(name, value)
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def assert_run_pages_readable(run_dir: Path) -> None:
    """report.html, report.md and the CLI summary table of a run directory pass `assert_readable`."""
    import json

    run_dir = Path(run_dir)
    assert_files_readable(run_dir / "report.html", run_dir / "report.md")
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert_readable(summary_table_text(data), where=f"summary table of {run_dir}")


def assert_no_verdict_stronger_than_its_test(data: dict) -> None:
    """Every yes/no verdict in report.json rests on a test that rejected at the report's alpha."""
    lc = data.get("learning_curve") or {}
    ft, of = lc.get("further_training") or {}, lc.get("overfitting") or {}
    if ft.get("available"):
        fit, answer = ft[ft["basis"]], ft["further_training_would_likely_help"]
        assert answer in ("yes", "no", "inconclusive"), answer
        if answer == "yes":
            assert fit["p_value"] < ft["alpha"] and fit["slope_per_step"] < 0, fit
        if answer == "no":
            assert fit["p_not_falling_enough"] < ft["alpha"], fit
    if of.get("available"):
        assert of["outcome"] in ("overfitting", "no overfitting", "inconclusive"), of["outcome"]
        if of["outcome"] == "overfitting":
            assert of["fit"]["p_value"] < of["alpha"], of["fit"]
        if of["outcome"] == "no overfitting":
            assert of["fit"]["p_rise_below_threshold"] < of["alpha"], of["fit"]
    tc = data.get("task_curves") or {}
    for v in [*(tc.get("further_training") or []), *(tc.get("overfitting") or [])]:
        if v.get("outcome") in ("improving", "falling"):
            assert v["test"]["p_value"] < data["settings"]["alpha"], v
        if v.get("outcome") == "flat":
            low, high = v["interval_points"]
            assert (-data["settings"]["flat_margin_points"] < low
                    and high < data["settings"]["flat_margin_points"]), v
    ev = data.get("evaluation") or {}
    for r in ev.get("rows") or []:
        if r.get("significant"):
            assert r["p_holm"] < ev["alpha"], r
