"""The Starlette application: routes, the headers every answer carries, and the error handlers (their pages
and the templates are `pages`').

Pages are rendered on the server from Jinja templates (autoescaped, undefined names are errors) with
the report's number formatting; the only script is the dashboard's own static files.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunescope.core.errors import UserError
from tunescope.serve.pages import error_page
from tunescope.serve.run_index import RunIndex
from tunescope.serve.security import COMMON_HEADERS, LOCAL_HOSTS, PAGE_POLICY, TokenGate

STATIC = Path(__file__).parent / "static"


class SecurityHeaders:
    """Adds the common headers to every answer, and the page policy to those that set no policy of their
    own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in COMMON_HEADERS.items():
                    headers.setdefault(k, v)
                headers.setdefault("Content-Security-Policy", PAGE_POLICY)
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    if request.url.path.startswith("/api/"):
        return Response(status_code=status)
    if status == 404:
        detail = getattr(exc, "detail", None)
        return error_page("Not found", detail if detail and detail != "Not Found" else
                          "Nothing here: the address names no run, page or file this dashboard serves.", 404)
    return error_page("Request refused", str(getattr(exc, "detail", "")) or "The request was refused.",
                      status)


async def user_error(request: Request, exc: Exception) -> Response:
    return error_page("Cannot show this", str(exc), 503 if "registry" in str(exc) else 400)


def build_app(index: RunIndex, *, token: str | None = None, local_only: bool = True) -> Starlette:
    """The dashboard over `index`. `local_only` accepts only requests addressed to this machine by a
    local name (a page elsewhere cannot reach the dashboard by rebinding its own name to 127.0.0.1);
    `token`, when set, is required of every request."""
    from tunescope.serve import cross_run_pages, run_pages

    routes = [
        Route("/", run_pages.runs_page),
        Route("/runs/{rid}", run_pages.run_page),
        Route("/runs/{rid}/files/{relative:path}", run_pages.run_file),
        Route("/api/runs/{rid}/progress", run_pages.run_progress),
        Route("/diff", run_pages.diff_redirect),
        Route("/compare", cross_run_pages.compare_page),
        Route("/compare/report", cross_run_pages.compare_report),
        Route("/grids", cross_run_pages.grids_page),
        Route("/grids/{gid}", cross_run_pages.grid_page),
        Route("/grids/{gid}/report", cross_run_pages.grid_report),
        Route("/leaderboard", cross_run_pages.leaderboard_page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if local_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=[
            h if ":" not in h else f"[{h}]" for h in LOCAL_HOSTS]))
    if token:
        middleware.append(Middleware(TokenGate, token=token))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: not_found, 404: not_found, UserError: user_error})
    app.state.index = index
    app.state.compare_cache = OrderedDict()
    return app
