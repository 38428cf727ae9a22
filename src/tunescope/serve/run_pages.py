"""The runs table, a run's page (its report, config, config diff and live progress), its files and the
progress API."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from tunescope.core.errors import UserError
from tunescope.serve import live
from tunescope.serve.config_diff import config_diff
from tunescope.serve.pages import error_page, page, url
from tunescope.serve.run_index import (
    FILTERS,
    PER_PAGE,
    SORT_KEYS,
    STATUSES,
    Query,
    RunEntry,
    RunIndex,
    run_id,
)
from tunescope.serve.security import FILE_POLICY, file_inside, media_type
from tunescope.store import registry as run_registry
from tunescope.store import run_folder as rr
from tunescope.store.layout import CONFIG, MANIFEST, METRICS, REPORT_HTML, REPORT_JSON, REPORT_MD

RUN_FILES = (REPORT_HTML, REPORT_MD, REPORT_JSON, CONFIG, MANIFEST, METRICS)
COLUMNS = (("name", "run"), ("status", "status"), ("model", "model"), ("method", "method"), ("data", "data"),
           ("grid", "grid"), ("date", "date"), ("task", "headline task"), ("base", "base"),
           ("tuned", "tuned"), ("delta", "Δ (points)"), ("p", "paired test"))
UNKNOWN_RUN = ("No run has this address. Its folder may have been deleted or moved, the run may have "
               "finished (an unfinished run's folder is renamed when it completes) or been removed from the "
               "registry. The runs page lists every run there is now.")


def index_of(request: Request) -> RunIndex:
    return request.app.state.index


def positive_int(text: str | None, default: int) -> int:
    try:
        return max(1, int(text)) if text else default
    except ValueError:
        return default


def entry_or_404(request: Request) -> RunEntry:
    entry = index_of(request).get(request.path_params["rid"])
    if entry is None:
        raise HTTPException(404, UNKNOWN_RUN)
    return entry


def view_row(e: RunEntry) -> dict[str, Any]:
    return {"id": e.id, "name": e.name, "status": e.status, "model": e.model, "method": e.method,
            "dataset": e.dataset, "grid": e.grid, "date": (e.date or "")[:16].replace("T", " "),
            "headline": e.headline, "registered": e.registered, "exists": e.path.is_dir()}


def runs_page(request: Request) -> Response:
    qp = request.query_params
    query = Query(q=qp.get("q", ""), filters={k: qp.get(k, "") for k in FILTERS}, sort=qp.get("sort", "date"),
                  descending=qp.get("dir", "desc") != "asc", page=positive_int(qp.get("page"), 1),
                  per_page=positive_int(qp.get("per"), PER_PAGE))
    result = index_of(request).query(query)
    state = {"q": query.q, **query.filters, "sort": query.sort, "dir": "desc" if query.descending else "asc",
             "per": qp.get("per", "")}

    def sort_url(key: str) -> str:
        flip = "asc" if query.sort == key and query.descending else "desc"
        return url("/", {**state, "sort": key, "dir": flip})

    def page_url(n: int) -> str:
        return url("/", {**state, "page": n})

    return page("runs.html.j2", title="Runs", nav="runs", rows=[view_row(e) for e in result.rows],
                result=result, state=state, facets=result.facets, statuses=STATUSES, columns=COLUMNS,
                sort_keys=SORT_KEYS, sort_url=sort_url, page_url=page_url,
                filter_url=lambda key, value: url("/", {**state, key: value}))


def registered_details(registry: Path, path: Path) -> dict[str, Any] | None:
    """The registry's row of a run: config, manifest, figures and every score."""
    with closing(run_registry.connect_read_only(registry)) as conn:
        row = conn.execute("SELECT * FROM runs WHERE path = ?", (str(path),)).fetchone()
        if row is None:
            return None
        scores = [dict(r) for r in conn.execute(
            "SELECT label, task, metric, value, stderr, n FROM scores WHERE path = ? "
            "ORDER BY task, metric, label",
            (str(path),))]
    run = dict(row)
    return {"config": json.loads(run.get("config_json") or "{}"),
            "manifest": json.loads(run.get("manifest_json") or "{}"), "scores": scores,
            "started": run.get("started"), "finished": run.get("finished"), "wall_s": run.get("wall_s"),
            "steps": run.get("steps"), "device": run.get("device"), "cost_usd": run.get("cost_usd")}


def config_of(index: RunIndex, entry: RunEntry) -> tuple[dict | None, str | None]:
    """(the run's config, why it cannot be read)."""
    if entry.registered:
        details = registered_details(index.registry, entry.path)
        return (details["config"], None) if details else (None, "the run is no longer in the registry")
    try:
        return rr.read_config(entry.path).model_dump(mode="json"), None
    except (UserError, OSError) as e:
        return None, str(e)


def resolve_other(index: RunIndex, ref: str) -> tuple[RunEntry | None, str | None]:
    """The run a config diff compares with: an id, or a registered name naming one run."""
    ref = ref.strip()
    found = index.get(ref)
    if found is not None:
        return found, None
    named = index.registered_named(ref)
    if len(named) == 1:
        return named[0], None
    if not named:
        return None, f"no registered run is named '{ref}'"
    return None, f"'{ref}' names {len(named)} runs; choose one by its id: " + ", ".join(
        f"{e.id} ({e.path})" for e in named)


def run_page(request: Request) -> Response:
    index = index_of(request)
    entry = entry_or_404(request)
    details = registered_details(index.registry, entry.path) if entry.registered else None
    config, config_problem = (details["config"], None) if details else config_of(index, entry)
    exists = entry.path.is_dir()
    diff: dict[str, Any] | None = None
    if other_ref := request.query_params.get("diff", ""):
        other, problem = resolve_other(index, other_ref)
        diff = {"ref": other_ref, "problem": problem, "rows": [], "same": 0, "other": None}
        if other is not None:
            other_config, other_problem = config_of(index, other)
            diff["other"] = view_row(other)
            if config is None or other_config is None:
                diff["problem"] = other_problem or config_problem
            else:
                diff["rows"], diff["same"] = config_diff(config, other_config)
    files = [(name, f"/runs/{entry.id}/files/{name}")
             for name in RUN_FILES if exists and (entry.path / name).is_file()]
    return page("run.html.j2", title=entry.name, nav="runs", run=view_row(entry), path=str(entry.path),
                details=details, exists=exists, files=files,
                config_yaml=yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else None,
                config_problem=config_problem, diff=diff, live=not entry.registered and exists,
                has_report=exists and (entry.path / REPORT_HTML).is_file())


def run_file(request: Request) -> Response:
    entry = entry_or_404(request)
    if not entry.path.is_dir():
        return error_page("Run folder missing", f"The folder of run '{entry.name}' no longer exists: "
                          f"{entry.path}. It was deleted or moved after the run was registered.", 404)
    target = file_inside(entry.path, request.path_params["relative"], request.scope.get("raw_path", b""))
    if target is None:
        raise HTTPException(404)
    kind, download = media_type(target)
    headers = {"Content-Security-Policy": FILE_POLICY}
    if download:
        headers["Content-Disposition"] = "attachment"
    return FileResponse(target, media_type=kind, headers=headers)


def run_progress(request: Request) -> Response:
    index = index_of(request)
    rid = request.path_params["rid"]
    path = index.known_path(rid)
    if path is None:
        return JSONResponse({"status": "unknown"}, status_code=404)
    try:
        offset = int(request.query_params.get("offset") or 0)
    except ValueError:
        offset = 0
    state = live.progress(path, offset)
    if state.get("final"):
        state["final_url"] = f"/runs/{run_id(state.pop('final'))}"
    return JSONResponse(state)


def diff_redirect(request: Request) -> Response:
    chosen = request.query_params.getlist("run")
    if len(chosen) != 2:
        return error_page("Choose two runs", f"A config diff compares two runs; {len(chosen)} were chosen. "
                          "Tick two runs on the runs page.", 400)
    return RedirectResponse(url(f"/runs/{chosen[0]}", {"diff": chosen[1]}), status_code=303)
