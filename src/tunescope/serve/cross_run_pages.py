"""The comparison of chosen runs (made on the fly by the compare recipe), the grids and the leaderboard."""

from __future__ import annotations

import math
import shlex
import tempfile
import threading
from collections import OrderedDict
from contextlib import closing
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from tunescope.core.errors import UserError
from tunescope.serve.pages import error_page, page, url
from tunescope.serve.run_index import RunEntry, run_id
from tunescope.serve.run_pages import index_of, positive_int, view_row
from tunescope.serve.security import FILE_POLICY
from tunescope.store import registry as run_registry
from tunescope.store import run_folder as rr
from tunescope.store.grid_folder import is_grid_folder

COMPARE_CACHE_SIZE = 16
LEADERBOARD_PER_PAGE = 100
GRID_REPORT = "grid.html"
_compare_lock = threading.Lock()


# ---------------------------------------------------------------- compare


def chosen_runs(request: Request) -> tuple[list[RunEntry], str | None]:
    """The runs ticked on the runs page (`?run=ID&run=ID`), or why they cannot be compared."""
    ids = request.query_params.getlist("run")
    if len(ids) < 2:
        return [], f"A comparison needs two or more runs; {len(ids)} chosen. Tick them on the runs page."
    if len(set(ids)) != len(ids):
        return [], "A run was chosen twice; choose each run once."
    index = index_of(request)
    entries = [index.get(i) for i in ids]
    unknown = [i for i, e in zip(ids, entries, strict=True) if e is None]
    if unknown:
        return [], (f"No run has the id {', '.join(unknown)} (deleted, moved or unregistered since it was "
                    "chosen).")
    return [e for e in entries if e is not None], None


def stamp(entry: RunEntry) -> float:
    try:
        return (entry.path / rr.MANIFEST).stat().st_mtime
    except OSError:
        return -1.0


def comparison_html(request: Request, entries: list[RunEntry], baseline: str | None) -> str:
    """comparison.html of `tunescope compare` on these runs, written to a temporary folder (nothing is written
    beside the runs) and kept for the next request while the runs are unchanged."""
    from tunescope.recipes.compare import compare

    cache: OrderedDict = request.app.state.compare_cache
    key = (tuple(str(e.path) for e in entries), baseline, tuple(stamp(e) for e in entries))
    with _compare_lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    missing = [e.name for e in entries if not e.path.is_dir()]
    if missing:
        raise UserError(f"the folder of {', '.join(missing)} no longer exists (deleted or moved)",
                        where="compare")
    with tempfile.TemporaryDirectory(prefix="tunescope-serve-compare-") as out:
        paths = compare([e.path for e in entries], baseline=baseline or None, output=Path(out))
        html = paths["html"].read_text(encoding="utf-8")
    with _compare_lock:
        cache[key] = html
        while len(cache) > COMPARE_CACHE_SIZE:
            cache.popitem(last=False)
    return html


def compare_page(request: Request) -> Response:
    entries, problem = chosen_runs(request)
    baseline = request.query_params.get("baseline", "").strip()
    if problem:
        return error_page("Cannot compare", problem, 400)
    command = "tunescope compare " + " ".join(shlex.quote(str(e.path)) for e in entries)
    if baseline:
        command += f" --baseline {shlex.quote(baseline)}"
    params = [("run", e.id) for e in entries] + [("baseline", baseline)]
    try:
        comparison_html(request, entries, baseline)
    except UserError as e:
        return page("compare.html.j2", 400, title="Compare", nav="runs", runs=[view_row(e) for e in entries],
                    problem=str(e), command=command, permalink=str(request.url), report_url=None,
                    baseline=baseline)
    return page("compare.html.j2", title="Compare", nav="runs", runs=[view_row(e) for e in entries],
                problem=None, command=command, permalink=str(request.url),
                report_url=url("/compare/report", params), baseline=baseline)


def compare_report(request: Request) -> Response:
    entries, problem = chosen_runs(request)
    if problem:
        raise HTTPException(404, problem)
    try:
        html = comparison_html(request, entries, request.query_params.get("baseline", "").strip())
    except UserError as e:
        raise HTTPException(404, str(e)) from None
    return HTMLResponse(html, headers={"Content-Security-Policy": FILE_POLICY})


# ---------------------------------------------------------------- grids


def grids(request: Request) -> dict[str, dict]:
    """Grid folders by id: the folders that hold runs of a grid (registered or unfinished)."""
    entries, _ = index_of(request).entries()
    found: dict[str, dict] = {}
    for e in entries:
        if not e.grid:
            continue
        folder = e.path.parent
        gid = run_id(folder)
        g = found.setdefault(gid, {"id": gid, "name": e.grid, "folder": str(folder), "runs": [],
                                   "report": (folder / GRID_REPORT).is_file() and is_grid_folder(folder)})
        g["runs"].append(e)
    for g in found.values():
        g["counts"] = {s: sum(r.status == s for r in g["runs"])
                       for s in ("finished", "running", "failed", "interrupted")}
    return found


def grids_page(request: Request) -> Response:
    found = sorted(grids(request).values(), key=lambda g: (g["name"], g["folder"]))
    return page("grids.html.j2", title="Grids", nav="grids", grids=found)


def grid_or_404(request: Request) -> dict:
    found = grids(request).get(request.path_params["gid"])
    if found is None:
        raise HTTPException(404, "No grid has this address: its runs may have been removed from the "
                            "registry.")
    return found


def grid_page(request: Request) -> Response:
    g = grid_or_404(request)
    rows = sorted((view_row(e) for e in g["runs"]), key=lambda r: r["name"])
    return page("grid.html.j2", title=f"Grid {g['name']}", nav="grids", grid=g, rows=rows,
                report_url=f"/grids/{g['id']}/report" if g["report"] else None)


def grid_report(request: Request) -> Response:
    g = grid_or_404(request)
    path = Path(g["folder"]) / GRID_REPORT
    if not g["report"] or not path.is_file():
        raise HTTPException(404, "This grid has no grid.html (it is written when the grid's runs finish).")
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": FILE_POLICY})


# ---------------------------------------------------------------- leaderboard


def leaderboard_page(request: Request) -> Response:
    index = index_of(request)
    _, facets = index.entries()
    qp = request.query_params
    task = qp.get("task") or (facets["task"][0] if facets["task"] else "")
    metric, label = qp.get("metric") or None, qp.get("label") or None
    board, problem, metrics = None, None, []
    if task:
        with closing(run_registry.connect_read_only(index.registry)) as conn:
            metrics = [r[0] for r in conn.execute(
                "SELECT DISTINCT metric FROM scores WHERE task = ? ORDER BY metric", (task,))]
            try:
                board = run_registry.leaderboard(task, metric=metric, label=label, conn=conn)
            except UserError as e:
                problem = str(e)
    rows, pages, number = [], 1, positive_int(qp.get("page"), 1)
    if board:
        pages = max(1, math.ceil(len(board["rows"]) / LEADERBOARD_PER_PAGE))
        number = min(number, pages)
        rows = board["rows"][(number - 1) * LEADERBOARD_PER_PAGE: number * LEADERBOARD_PER_PAGE]
        for r in rows:
            r["id"] = run_id(r["path"])
    state = {"task": task, "metric": metric or "", "label": label or ""}
    return page("leaderboard.html.j2", title="Leaderboard", nav="leaderboard", tasks=facets["task"],
                metrics=metrics, state=state, board=board, rows=rows, problem=problem, page_number=number,
                pages=pages, page_url=lambda n: url("/leaderboard", {**state, "page": n}))
