"""The dashboard's pages: its jinja templates (autoescaped, strict), a page or an error page from one, and
its links. The routes of `app` and the page handlers (`run_pages`, `cross_run_pages`) render through here."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse

from tunescope.report.render import FILTERS


@functools.lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(loader=PackageLoader("tunescope.serve", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates().get_template(name).render(**context), status_code=status_code)


def error_page(title: str, message: str, status_code: int, **extra: Any) -> HTMLResponse:
    return page("error.html.j2", status_code, title=title, message=message, nav="", **extra)


def url(path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> str:
    """`path?query` without the empty parameters."""
    items = params.items() if isinstance(params, dict) else params
    query = urlencode([(k, v) for k, v in items if v not in (None, "")])
    return f"{path}?{query}" if query else path
