"""What the dashboard lets through: files only from inside a run folder, pages under a strict policy, and,
when it listens beyond this machine, only browsers that present its token.

Run folders hold model text, so a file from one is served as the report itself is shown: under the
report's Content-Security-Policy (no script, nothing loaded from anywhere) plus `sandbox`, which gives it
an origin of its own, so it cannot read the dashboard even if it carried a script.
"""

from __future__ import annotations

import hmac
import re
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# The policy report.html, comparison.html and grid.html carry in their own <meta> (report/templates).
REPORT_POLICY = ("default-src 'none'; script-src 'none'; object-src 'none'; img-src data:; "
                 "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
FILE_POLICY = REPORT_POLICY + "; sandbox; frame-ancestors 'self'"
# The dashboard's own pages: its own script and style files only, no inline code, no other origin.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src "
               "'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                  "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "tunescope_token"
# Percent-encoded "/" or "\" in the request line: a path segment that would become two after decoding.
ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)

TEXT_TYPES = {".md": "text/plain; charset=utf-8", ".yaml": "text/plain; charset=utf-8",
              ".yml": "text/plain; charset=utf-8", ".json": "text/plain; charset=utf-8",
              ".jsonl": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
              ".log": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8", ".png": "image/png"}


def file_inside(root: Path, relative: str, raw_path: bytes) -> Path | None:
    """The regular file `relative` names inside `root`, or None: for `..` or `.` segments, empty segments,
    backslashes, NUL, encoded separators in the request line, and anything whose real path (symlinks
    followed) leaves `root`."""
    if ENCODED_SEPARATOR.search(raw_path) or not relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    try:
        real_root = root.resolve(strict=True)
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(real_root) or not target.is_file():
        return None
    return target


def media_type(path: Path) -> tuple[str, bool]:
    """(Content-Type, whether to offer it as a download rather than show it)."""
    found = TEXT_TYPES.get(path.suffix.lower())
    return (found, False) if found else ("application/octet-stream", True)


class TokenGate:
    """Every request must carry the token: as `?token=` (answered by a redirect that stores it in a
    same-site, HTTP-only cookie and drops it from the address), the cookie, or `Authorization: Bearer`."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode("utf-8")

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode("utf-8"), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if self._ok(given):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            cookie = SimpleCookie()
        bearer = headers.get("authorization", "")
        if (self._ok(cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None)
                or (bearer.startswith("Bearer ") and self._ok(bearer[7:]))):
            await self.app(scope, receive, send)
            return
        await PlainTextResponse("this tunescope serve needs its token: open the address it printed, which "
                                "ends in ?token=...", status_code=401)(scope, receive, send)
