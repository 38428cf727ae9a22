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
    """What in ``text`` a person should not read, each as ``kind: …context…``; empty when the page is clean."""
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
