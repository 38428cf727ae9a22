"""Every run the dashboard can show, as one in-memory table: the registered runs (read from the registry
through a read-only connection, reloaded only when the registry file changes) and the unfinished run
folders (`.<name>.partial`) beside them, rescanned at most once a second.

Filtering, sorting and paging happen here, on the server, so a page of the runs table costs the same
whether the registry lists ten runs or ten thousand.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunescope import run_registry
from tunescope.results_schema import finite_float, headline_metric, metric_label
from tunescope.serve.partial_runs import PartialScanner

STATUSES = ("running", "finished", "failed", "interrupted")
SORT_KEYS = ("name", "status", "model", "method", "data", "grid", "date", "task", "base", "tuned", "delta", "p")
FILTERS = ("model", "method", "task", "grid", "status")
PER_PAGE = 50
MAX_PER_PAGE = 500


def run_id(path: str | Path) -> str:
    """A run's id in URLs: a digest of its resolved folder (the registry's key)."""
    return hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:16]


@dataclass
class RunEntry:
    id: str
    path: Path
    name: str
    status: str
    model: str | None = None
    method: str | None = None
    dataset: str | None = None
    grid: str | None = None
    date: str | None = None
    registered: bool = True
    tasks: tuple[str, ...] = ()
    headline: dict[str, Any] | None = None

    def sort_value(self, key: str) -> Any:
        h = self.headline or {}
        return {"name": self.name.lower(), "status": self.status, "model": self.model, "method": self.method,
                "data": self.dataset, "grid": self.grid, "date": self.date, "task": h.get("task"),
                "base": h.get("base"), "tuned": h.get("tuned"), "delta": h.get("delta_points"),
                "p": h.get("p_holm")}[key]


@dataclass
class Query:
    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "date"
    descending: bool = True
    page: int = 1
    per_page: int = PER_PAGE


@dataclass
class Page:
    rows: list[RunEntry]
    total: int
    matching: int
    page: int
    pages: int
    facets: dict[str, list[str]]


def headline_from(stored: str | None, scores: list[dict]) -> dict[str, Any] | None:
    """The run's headline comparison: as registered (with its paired test) or, for runs registered by an
    earlier version, the primary metric of the target task from the score rows (no test)."""
    if stored:
        h = json.loads(stored)
        if h.get("task"):
            return h
    if not scores:
        return None
    tasks = sorted({s["task"] for s in scores}, key=lambda t: (t != "heldout", not t.startswith("gsm8k"), t))
    task = tasks[0]
    rows = [s for s in scores if s["task"] == task]
    metric = headline_metric(s["metric"] for s in rows)
    by_label = {s["label"]: s for s in rows if s["metric"] == metric}
    base, tuned = by_label.get("base", {}), by_label.get("tuned", {})
    h = {"task": task, "metric": metric, "label": metric_label(metric) if metric else None,
         "base": finite_float(base.get("value")), "base_stderr": finite_float(base.get("stderr")),
         "tuned": finite_float(tuned.get("value")), "tuned_stderr": finite_float(tuned.get("stderr")),
         "p_holm": None, "significant": None}
    h["delta_points"] = (h["tuned"] - h["base"]) * 100 if h["base"] is not None and h["tuned"] is not None else None
    return h


class RunIndex:
    """The dashboard's view of the registry and the run folders. Thread-safe; never writes anything."""

    def __init__(self, registry: Path, runs_dirs: list[Path]):
        self.registry = Path(registry)
        self.runs_dirs = [Path(d) for d in runs_dirs]
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._registered: list[RunEntry] = []
        self._by_id: dict[str, RunEntry] = {}
        self._parents: set[Path] = set()
        self._facets: dict[str, list[str]] = {}
        # Unfinished folders seen since the start: their progress can still say "finished" or "gone".
        self._seen: dict[str, Path] = {}
        self._partials = PartialScanner()
        self.loaded_at = 0.0

    # ------------------------------------------------------------ loading

    def _registry_signature(self) -> tuple:
        sig = []
        for suffix in ("", "-wal"):
            p = Path(str(self.registry) + suffix)
            try:
                st = p.stat()
                sig.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def _load_registered(self) -> list[RunEntry]:
        with closing(run_registry.connect_read_only(self.registry)) as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            headline_col = "headline_json" if "headline_json" in columns else "NULL AS headline_json"
            grid_col = "grid" if "grid" in columns else "NULL AS grid"
            rows = conn.execute("SELECT path, name, model, dataset, method, finished, registered_at, "
                                f"{grid_col}, {headline_col} FROM runs").fetchall()
            tasks: dict[str, tuple[str, ...]] = {}
            for path, joined in conn.execute("SELECT path, group_concat(DISTINCT task) FROM scores GROUP BY path"):
                tasks[path] = tuple(sorted((joined or "").split(","))) if joined else ()
            fallback: dict[str, list[dict]] = {}
            # Only runs registered before the headline was recorded need their score rows.
            without_headline = " WHERE r.headline_json IS NULL" if "headline_json" in columns else ""
            for s in conn.execute("SELECT s.path, s.label, s.task, s.metric, s.value, s.stderr FROM scores s "
                                  "JOIN runs r ON r.path = s.path" + without_headline):
                fallback.setdefault(s["path"], []).append(dict(s))
        return [RunEntry(id=run_id(r["path"]), path=Path(r["path"]), name=r["name"], status="finished",
                         model=r["model"], method=r["method"], dataset=r["dataset"], grid=r["grid"],
                         date=r["finished"] or r["registered_at"], tasks=tasks.get(r["path"], ()),
                         headline=headline_from(r["headline_json"], fallback.get(r["path"], [])))
                for r in rows]

    def refresh(self) -> None:
        """Reload the registered runs if the registry changed since the last load."""
        sig = self._registry_signature()
        with self._lock:
            if sig == self._signature:
                return
            registered = self._load_registered()
            self._registered = registered
            self._by_id = {e.id: e for e in registered}
            self._parents = {e.path.parent for e in registered}
            self._facets = facets_of(registered)
            self._signature = sig
            self.loaded_at = time.time()

    def partial_entries(self, fresh: bool = False) -> list[RunEntry]:
        """The unfinished run folders under the runs folders and beside every registered run (`fresh`: scan
        now rather than reuse a scan of the last second)."""
        with self._lock:
            roots = sorted(set(self.runs_dirs) | self._parents)
        found = self._partials.scan(roots, fresh=fresh)
        with self._lock:
            for p in found:
                self._seen[run_id(p.path)] = p.path
        return [RunEntry(id=run_id(p.path), path=p.path, name=p.name, status=p.status, model=p.model,
                         method=p.method, dataset=p.dataset, grid=p.grid, date=p.started, registered=False)
                for p in found]

    def entries(self) -> tuple[list[RunEntry], dict[str, list[str]]]:
        """Every run (unfinished first) and the values each filter can take."""
        self.refresh()
        with self._lock:
            registered, facets = self._registered, self._facets
        partial = self.partial_entries()
        if partial:
            extra = facets_of(partial)
            facets = {k: sorted(set(v) | set(extra[k])) for k, v in facets.items()}
        return partial + registered, facets

    def get(self, rid: str) -> RunEntry | None:
        self.refresh()
        with self._lock:
            found = self._by_id.get(rid)
        if found is not None:
            return found
        for fresh in (False, True):  # a folder made in the last second is not in the last scan
            found = next((e for e in self.partial_entries(fresh) if e.id == rid), None)
            if found is not None:
                return found
        return None

    def known_path(self, rid: str) -> Path | None:
        """The folder of a run listed now or of an unfinished run listed earlier (which may be gone)."""
        entry = self.get(rid)
        if entry is not None:
            return entry.path
        with self._lock:
            return self._seen.get(rid)

    def registered_named(self, name: str) -> list[RunEntry]:
        self.refresh()
        with self._lock:
            return [e for e in self._registered if e.name == name]

    # ------------------------------------------------------------ querying

    def query(self, query: Query) -> Page:
        entries, facets = self.entries()
        needle = query.q.strip().lower()
        picked = [e for e in entries if matches(e, needle, query.filters)]
        key = query.sort if query.sort in SORT_KEYS else "date"
        present = [e for e in picked if e.sort_value(key) is not None]
        absent = [e for e in picked if e.sort_value(key) is None]
        present.sort(key=lambda e: e.sort_value(key), reverse=query.descending)
        ordered = present + absent  # a run without the value sorts last either way
        per = max(1, min(query.per_page, MAX_PER_PAGE))
        pages = max(1, math.ceil(len(ordered) / per))
        page = max(1, min(query.page, pages))
        rows = ordered[(page - 1) * per: page * per]
        return Page(rows=rows, total=len(entries), matching=len(ordered), page=page, pages=pages, facets=facets)


def matches(e: RunEntry, needle: str, filters: dict[str, str]) -> bool:
    if needle and needle not in e.name.lower():
        return False
    for key, want in filters.items():
        if not want:
            continue
        if key == "task":
            if want not in e.tasks:
                return False
        elif key == "status":
            if e.status != want:
                return False
        elif (getattr(e, "dataset" if key == "data" else key) or "") != want:
            return False
    return True


def facets_of(entries: list[RunEntry]) -> dict[str, list[str]]:
    """The values each filter can take (for the filter menus)."""
    out: dict[str, set[str]] = {k: set() for k in FILTERS}
    for e in entries:
        for k in ("model", "method", "grid"):
            v = getattr(e, k)
            if v:
                out[k].add(v)
        out["task"].update(e.tasks)
        out["status"].add(e.status)
    return {k: sorted(v) for k, v in out.items()}
