"""Every run the dashboard can show, as one in-memory table: the registered runs (read from the registry
through a read-only connection, reloaded only when the registry file changes) and the unfinished run
folders (`.<name>.partial`) beside them, rescanned at most once a second.

Filtering, sorting and paging happen here, on the server, so a page of the runs table costs the same
whether the registry lists ten runs or ten thousand.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.serve.partial_runs import PartialScanner
from tunescope.store import registry as run_registry
from tunescope.store.scores import finite_float, headline_metric, metric_label

STATUSES = ("running", "finished", "failed", "interrupted")
SORT_KEYS = ("name", "status", "model", "method", "data", "grid", "date", "task", "base", "tuned", "delta",
             "p")
FILTERS = ("model", "method", "task", "grid", "status")
PER_PAGE = 50
MAX_PER_PAGE = 500


def run_id(path: str | Path) -> str:
    """A run's id in URLs: a digest of its resolved folder (the registry's key)."""
    return hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:16]


# The entry field each sort key reads.
SORT_FIELDS = {"name": "name_key", "status": "status", "model": "model", "method": "method",
               "data": "dataset", "grid": "grid", "date": "date", "task": "h_task", "base": "h_base",
               "tuned": "h_tuned", "delta": "h_delta", "p": "h_p"}


@dataclass(eq=False)
class RunEntry:
    """One run as the runs table shows it. The headline's sortable figures are read by SQLite; the rest of
    the headline is parsed only when the run is on the page shown."""

    id: str
    location: str
    name: str
    status: str
    model: str | None = None
    method: str | None = None
    dataset: str | None = None
    grid: str | None = None
    date: str | None = None
    registered: bool = True
    tasks: tuple[str, ...] = ()
    headline_json: str | None = None
    h_task: str | None = None
    h_base: float | None = None
    h_tuned: float | None = None
    h_delta: float | None = None
    h_p: float | None = None
    parsed: dict[str, Any] | None = None
    name_key: str = ""

    def __post_init__(self) -> None:
        self.name_key = self.name.lower()

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def headline(self) -> dict[str, Any] | None:
        if self.parsed is None and self.headline_json:
            self.parsed = json.loads(self.headline_json)
        return self.parsed

    def use_headline(self, h: dict[str, Any] | None) -> RunEntry:
        """Set the headline from a dictionary (runs registered before it was stored)."""
        if h:
            self.parsed = h
            self.h_task, self.h_base, self.h_tuned = h.get("task"), h.get("base"), h.get("tuned")
            self.h_delta, self.h_p = h.get("delta_points"), h.get("p_holm")
        return self

    def sort_value(self, key: str) -> Any:
        return getattr(self, SORT_FIELDS[key])


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


def headline_from_scores(scores: list[dict]) -> dict[str, Any] | None:
    """For runs registered before the headline comparison was stored: the primary metric of the target
    task from the score rows (no paired test)."""
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
    h["delta_points"] = ((h["tuned"] - h["base"]) * 100 if h["base"] is not None and h["tuned"] is not None
                         else None)
    return h


class RunIndex:
    """The dashboard's view of the registry and the run folders. Thread-safe; never writes anything."""

    def __init__(self, registry: Path, runs_dirs: list[Path]):
        self.registry = Path(registry)
        self.runs_dirs = [Path(d) for d in runs_dirs]
        self._lock = threading.Lock()
        self._reloading = threading.Lock()
        self._signature: tuple | None = None
        self._registered: list[RunEntry] = []
        self._by_id: dict[str, RunEntry] = {}
        self._parents: set[Path] = set()
        self._facets: dict[str, list[str]] = {}
        self._orders: dict[tuple[str, bool], tuple[list[RunEntry], list[RunEntry]]] = {}
        # Unfinished folders seen since the start: their progress can still say "finished" or "gone".
        self._seen: dict[str, Path] = {}
        self._partials = PartialScanner()
        self.loaded_at = 0.0

    # ------------------------------------------------------------ loading

    def _registry_signature(self) -> tuple:
        """Changes when a write reaches the registry: its file, or its write-ahead log (which a reader may
        create empty, and which is not a change then)."""
        sig = []
        for suffix in ("", "-wal"):
            p = Path(str(self.registry) + suffix)
            try:
                st = p.stat()
                sig.append((st.st_mtime_ns, st.st_size) if st.st_size else None)
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def _load_registered(self) -> list[RunEntry]:
        with closing(run_registry.connect_read_only(self.registry)) as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            grid_col = "grid" if "grid" in columns else "NULL"
            if "headline_json" in columns:
                headline_cols = "headline_json, " + ", ".join(
                    f"CASE WHEN json_valid(headline_json) THEN json_extract(headline_json, '$.{k}') END"
                    for k in ("task", "base", "tuned", "delta_points", "p_holm"))
            else:
                headline_cols = "NULL, NULL, NULL, NULL, NULL, NULL"
            rows = conn.execute("SELECT path, name, model, dataset, method, COALESCE(finished, "
                                f"registered_at), {grid_col}, {headline_cols} FROM runs").fetchall()
            tasks: dict[str, tuple[str, ...]] = {}
            for path, joined in conn.execute(
                    "SELECT path, group_concat(DISTINCT task) FROM scores GROUP BY path"):
                tasks[path] = tuple(sorted((joined or "").split(","))) if joined else ()
            fallback: dict[str, list[dict]] = {}
            # Only runs registered before the headline was recorded need their score rows.
            without_headline = " WHERE r.headline_json IS NULL" if "headline_json" in columns else ""
            for s in conn.execute("SELECT s.path, s.label, s.task, s.metric, s.value, s.stderr FROM scores s "
                                  "JOIN runs r ON r.path = s.path" + without_headline):
                fallback.setdefault(s["path"], []).append(dict(s))
        entries = [RunEntry(run_id(path), path, name, "finished", model, method, dataset, grid, date, True,
                            tasks.get(path, ()), stored, h_task, h_base, h_tuned, h_delta, h_p)
                   for (path, name, model, dataset, method, date, grid, stored, h_task, h_base, h_tuned,
                        h_delta, h_p) in rows]
        for e in entries:
            if e.h_task is None and e.location in fallback:
                e.use_headline(headline_from_scores(fallback[e.location]))
        return entries

    def refresh(self, wait: bool = False) -> None:
        """Reload the registered runs if the registry changed since the last load. Once a first table is
        loaded, a reload runs in the background and requests keep the previous table until it is done,
        unless `wait` (a run asked for by its id that the previous table lacks)."""
        sig = self._registry_signature()
        with self._lock:
            if sig == self._signature:
                return
            loaded = self._signature is not None
        if loaded and not wait:
            if not self._reloading.locked():
                threading.Thread(target=self._reload_quietly, daemon=True).start()
            return
        self._reload()

    def _reload(self) -> None:
        with self._reloading:  # one reload at a time; readers use the previous table meanwhile
            # read before the rows: a write during the load is seen next time
            sig = self._registry_signature()
            with self._lock:
                if sig == self._signature:
                    return
            registered = self._load_registered()
            facets = facets_of(registered)
            parents = {Path(folder) for folder in {os.path.dirname(e.location) for e in registered}}
            with self._lock:
                self._registered, self._facets, self._parents = registered, facets, parents
                self._by_id = {e.id: e for e in registered}
                self._orders = {}
                self._signature = sig
                self.loaded_at = time.time()

    def _reload_quietly(self) -> None:
        try:
            self._reload()
        except UserError:  # the registry went away: the next request that must wait for it says so
            pass

    def partial_entries(self, fresh: bool = False) -> list[RunEntry]:
        """The unfinished run folders under the runs folders and beside every registered run (`fresh`: scan
        now rather than reuse a scan of the last second)."""
        with self._lock:
            roots = sorted(set(self.runs_dirs) | self._parents)
        found = self._partials.scan(roots, fresh=fresh)
        with self._lock:
            for p in found:
                self._seen[run_id(p.path)] = p.path
        return [RunEntry(id=run_id(p.path), location=str(p.path), name=p.name, status=p.status, model=p.model,
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
        for wait in (False, True):
            self.refresh(wait)
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

    def _registered_order(self, key: str, descending: bool) -> tuple[list[RunEntry], list[RunEntry]]:
        """The registered runs sorted by `key` (those with a value, then those without), kept until the
        registry changes."""
        with self._lock:
            order = self._orders.get((key, descending))
            if order is None:
                present = [e for e in self._registered if e.sort_value(key) is not None]
                present.sort(key=lambda e: e.sort_value(key), reverse=descending)
                order = (present, [e for e in self._registered if e.sort_value(key) is None])
                self._orders[(key, descending)] = order
            return order

    def query(self, query: Query) -> Page:
        self.refresh()
        partial = self.partial_entries()
        with self._lock:
            facets, total = self._facets, len(self._registered) + len(partial)
        if partial:
            extra = facets_of(partial)
            facets = {k: sorted(set(v) | set(extra[k])) for k, v in facets.items()}
        key = query.sort if query.sort in SORT_KEYS else "date"
        present, absent = self._registered_order(key, query.descending)
        if partial:  # a few unfinished runs merged into the kept order
            own = sorted((e for e in partial if e.sort_value(key) is not None),
                         key=lambda e: e.sort_value(key), reverse=query.descending)
            present = list(heapq.merge(own, present, key=lambda e: e.sort_value(key),
                                       reverse=query.descending))
            absent = [e for e in partial if e.sort_value(key) is None] + absent
        ordered = present + absent  # a run without the value sorts last either way
        needle = query.q.strip().lower()
        if needle or any(query.filters.values()):
            ordered = [e for e in ordered if matches(e, needle, query.filters)]
        per = max(1, min(query.per_page, MAX_PER_PAGE))
        pages = max(1, math.ceil(len(ordered) / per))
        page = max(1, min(query.page, pages))
        rows = ordered[(page - 1) * per: page * per]
        return Page(rows=rows, total=total, matching=len(ordered), page=page, pages=pages, facets=facets)


def matches(e: RunEntry, needle: str, filters: dict[str, str]) -> bool:
    if needle and needle not in e.name_key:
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
