"""The local run registry: one SQLite file listing every finished run and its scores.

Default location ``~/.cache/tunescope/registry.sqlite``; the environment variable
``TUNESCOPE_REGISTRY`` overrides it. Runs are keyed by their resolved directory, so re-reporting a run
updates its row instead of adding a second one.

Several runs may finish at the same moment (parallel sweeps on one machine), so writes must never be
lost: the database runs in WAL mode (readers never block the writer), every connection waits up to
``BUSY_TIMEOUT_S`` for a lock, and each write is one ``BEGIN IMMEDIATE`` transaction that is retried
with jittered back-off when SQLite still reports the database as locked or busy.

The registry reads a run through ``store.run_folder`` (config, manifest, evaluations, the training summary
and, if present, ``report.json``); it imports nothing from the pipeline stages.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tunescope.core.errors import UserError
from tunescope.store.run_folder import Evaluation, RunRecord, open_run
from tunescope.store.scores import finite_float, headline_metric, metric_keys, stderr_key, task_n

ENV_VAR = "TUNESCOPE_REGISTRY"
BUSY_TIMEOUT_S = 30.0
RETRY_FOR_S = 120.0
# Version 2 added runs.grid (the experiment grid a run belongs to); version 3 the criterion that chose the
# shipped step and every criterion's best step; version 4 the headline comparison of the report (task, scores,
# the paired test). Older registries are migrated on open.
SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT,
    dataset TEXT,
    method TEXT,
    status TEXT,
    started TEXT,
    finished TEXT,
    registered_at TEXT NOT NULL,
    wall_s REAL,
    train_s REAL,
    steps INTEGER,
    epochs REAL,
    tokens_supervised INTEGER,
    cost_usd REAL,
    device TEXT,
    train_loss_first REAL,
    train_loss_last REAL,
    val_loss_first REAL,
    val_loss_best REAL,
    further_training TEXT,
    overfitting INTEGER,
    forgetting_tasks TEXT,
    selected_by TEXT,
    best_by_json TEXT,
    config_json TEXT,
    manifest_json TEXT,
    grid TEXT,
    headline_json TEXT
);
CREATE TABLE IF NOT EXISTS scores (
    path TEXT NOT NULL REFERENCES runs(path) ON DELETE CASCADE,
    label TEXT NOT NULL,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    stderr REAL,
    n INTEGER,
    PRIMARY KEY (path, label, task, metric)
);
CREATE INDEX IF NOT EXISTS scores_by_task ON scores (task, metric);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name);
"""

# Changes to registries made by earlier versions, by the version that introduced them.
_MIGRATIONS = {2: ["ALTER TABLE runs ADD COLUMN grid TEXT"],
               3: ["ALTER TABLE runs ADD COLUMN selected_by TEXT",
                   "ALTER TABLE runs ADD COLUMN best_by_json TEXT"],
               4: ["ALTER TABLE runs ADD COLUMN headline_json TEXT"]}

T = TypeVar("T")


def registry_path(path: str | Path | None = None) -> Path:
    """The registry file: ``path`` if given, else ``$TUNESCOPE_REGISTRY``, else
    ``~/.cache/tunescope/registry.sqlite``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tunescope" / "registry.sqlite"


def _is_lock_error(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _retry(fn: Callable[[], T]) -> T:
    """Run ``fn``; on "database is locked/busy" wait a jittered, growing delay and try again."""
    deadline = time.monotonic() + RETRY_FOR_S
    delay = 0.02
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _is_lock_error(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def _statements(script: str) -> list[str]:
    return [stmt.strip() for stmt in script.split(";") if stmt.strip()]


def _create_schema(conn: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction first, so the statements run one by one.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            existing = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            for stmt in _statements(_SCHEMA):
                conn.execute(stmt)
            if existing:  # a registry written by an earlier version: bring its tables up to date
                for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for stmt in _MIGRATIONS.get(v, []):
                        column = stmt.split("ADD COLUMN ")[-1].split()[0]
                        if column not in existing:
                            conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    """Open (and create if needed) the registry, in WAL mode with a busy timeout."""
    p = registry_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the registry folder ({e.strerror})", where=str(p.parent)) from None

    def open_() -> sqlite3.Connection:
        conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                _create_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return _retry(open_)
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot open the run registry ({e})", where=str(p)) from None


def connect_read_only(path: str | Path | None = None) -> sqlite3.Connection:
    """Open an existing registry for reading only (SQLite ``mode=ro``): nothing is created or migrated."""
    p = registry_path(path)
    if not p.is_file():
        raise UserError("no run registry here (it is written when a run finishes; set $TUNESCOPE_REGISTRY "
                        "to use another)", where=str(p))
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("SELECT count(*) FROM runs").fetchone()
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot read the run registry ({e})", where=str(p)) from None
    return conn


def _write(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` inside one BEGIN IMMEDIATE transaction, retried as a whole on lock errors."""

    def attempt() -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    return _retry(attempt)


# ---------------------------------------------------------------- reading a run directory


def scores_from_results(ev: Evaluation) -> list[dict]:
    """An evaluation's ``results.json`` (lm-evaluation-harness layout) as flat score rows."""
    rows = []
    results = ev.results
    for task, res in (results.get("results") or {}).items():
        n = task_n(results, task)
        if n is None:  # only then are the per-sample records read
            n = task_n(results, task, ev.samples.get(task))
        for key in metric_keys(res):
            rows.append({"label": ev.label, "task": task, "metric": key, "value": finite_float(res[key]),
                         "stderr": finite_float(res.get(stderr_key(key))), "n": n})
    return rows


def record_row(record: RunRecord) -> dict:
    """Everything the registry stores about one finished run."""
    summary = record.summary
    report = record.report or {}
    imp = (report.get("training") or {}).get("loss_improvement") or {}
    lc = report.get("learning_curve") or {}

    def point(kind: str, which: str) -> float | None:
        s = imp.get(kind) or {}
        return finite_float((s.get(which) or {}).get("value")) if s.get("available") else None

    def from_summary(key: str):
        return getattr(summary, key) if summary is not None else None

    manifest = record.manifest
    headline = headline_comparison(report)
    over = (lc.get("overfitting") or {}).get("overfitting")
    return {
        "path": str(record.path.resolve()),
        "name": manifest.name or record.name,
        "model": manifest.model.name or record.model,
        "dataset": manifest.data.get("source") or record.dataset,
        "method": record.method,
        "status": manifest.status,
        "started": manifest.started,
        "finished": manifest.finished,
        "wall_s": finite_float(manifest.wall_s),
        "train_s": finite_float(from_summary("train_s")),
        "steps": from_summary("steps"),
        "epochs": finite_float(from_summary("epochs")),
        "tokens_supervised": from_summary("tokens_supervised"),
        "cost_usd": finite_float(from_summary("cost_usd")),
        "device": manifest.device,
        "train_loss_first": point("train", "first"),
        "train_loss_last": point("train", "last"),
        "val_loss_first": point("val", "first"),
        "val_loss_best": point("val", "best"),
        "further_training": (lc.get("further_training") or {}).get("further_training_would_likely_help"),
        "overfitting": None if over is None else int(bool(over)),
        "forgetting_tasks": json.dumps((report.get("evaluation") or {}).get("forgetting_tasks", [])),
        # Runs that scored tasks during training: the criterion that chose the shipped step, and the
        # step every criterion (val_loss, <task>:<metric>) would have chosen.
        "selected_by": from_summary("selected_by"),
        "best_by_json": json.dumps(from_summary("best_by")) if from_summary("best_by") else None,
        "config_json": json.dumps(record.config.model_dump(mode="json")),
        "manifest_json": json.dumps(manifest.as_dict(), default=str),
        "grid": manifest.grid.id if manifest.grid else None,
        "headline_json": json.dumps(headline) if headline else None,
        "scores": [row for ev in record.evaluations.values() for row in scores_from_results(ev)],
    }


HEADLINE_FIELDS = ("task", "metric", "label", "is_target", "base", "base_stderr", "tuned", "tuned_stderr",
                   "n", "delta_points", "n_paired", "test", "p_value", "p_holm", "significant", "ci_low",
                   "ci_high")


def headline_comparison(report: dict) -> dict | None:
    """The report's first headline row (the training target's primary metric when there is one): base and
    tuned scores with their standard errors, the change in points and its paired test."""
    ev = report.get("evaluation") or {}
    rows, headline = ev.get("rows") or [], ev.get("headline") or []
    if not ev.get("available") or not headline or headline[0] >= len(rows):
        return None
    row = rows[headline[0]]
    return {k: row.get(k) for k in HEADLINE_FIELDS}


# ---------------------------------------------------------------- writing


_RUN_COLUMNS = ("path", "name", "model", "dataset", "method", "status", "started", "finished",
                "registered_at", "wall_s", "train_s", "steps", "epochs", "tokens_supervised", "cost_usd",
                "device", "train_loss_first", "train_loss_last", "val_loss_first", "val_loss_best",
                "further_training", "overfitting", "forgetting_tasks", "selected_by", "best_by_json",
                "config_json", "manifest_json", "grid", "headline_json")


def insert_record(record: dict, db: str | Path | None = None) -> str:
    """Insert or replace one run (and all its scores) in a single transaction. Returns its key."""
    record = {**record, "registered_at": datetime.now(UTC).isoformat(timespec="seconds")}

    def work(conn: sqlite3.Connection) -> str:
        conn.execute("DELETE FROM scores WHERE path = ?", (record["path"],))
        conn.execute(f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})",
                     [record.get(c) for c in _RUN_COLUMNS])
        conn.executemany("INSERT OR REPLACE INTO scores (path, label, task, metric, value, stderr, n) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(record["path"], s["label"], s["task"], s["metric"], s["value"],
                           s["stderr"], s["n"])
                          for s in record.get("scores", [])])
        return record["path"]

    with closing(connect(db)) as conn:
        return _write(conn, work)


def register_run(run_dir: str | Path, db: str | Path | None = None) -> str:
    """Add (or refresh) a finished run directory in the registry. Returns its key (the resolved path)."""
    return insert_record(record_row(open_run(run_dir)), db)


# ---------------------------------------------------------------- reading


def list_runs(db: str | Path | None = None, grid: str | None = None) -> list[dict]:
    """All registered runs (or those of one grid), newest first, with their headline score and whether
    the folder still exists."""
    where, args = ("WHERE grid = ? ", [grid]) if grid is not None else ("", [])
    with closing(connect(db)) as conn:
        runs = [dict(r) for r in conn.execute(
            "SELECT path, name, model, dataset, method, finished, registered_at, wall_s, steps, cost_usd, "
            "val_loss_best, further_training, overfitting, forgetting_tasks, grid FROM runs " + where +
            "ORDER BY COALESCE(finished, registered_at) DESC, name", args)]
        scores = [dict(r) for r in conn.execute("SELECT * FROM scores")]
    by_path: dict[str, list[dict]] = {}
    for s in scores:
        by_path.setdefault(s["path"], []).append(s)
    for r in runs:
        r["exists"] = Path(r["path"]).is_dir()
        r["forgetting_tasks"] = json.loads(r["forgetting_tasks"] or "[]")
        r["headline"] = _headline(by_path.get(r["path"], []))
    return runs


def _headline(scores: list[dict]) -> list[dict]:
    """Per (label, task): the headline metric's score (``store.scores.headline_metric``)."""
    out = []
    keys = sorted({(s["task"], s["label"]) for s in scores}, key=lambda k: (k[0], k[1] != "base"))
    for task, label in keys:
        rows = [s for s in scores if s["task"] == task and s["label"] == label]
        pick = headline_metric(s["metric"] for s in rows)
        out.append(next(s for s in rows if s["metric"] == pick))
    return out


def get_run(ref: str, db: str | Path | None = None) -> dict:
    """One run by name or directory, with all its scores. Ambiguous names list the candidates."""
    candidate = Path(ref).expanduser()
    with closing(connect(db)) as conn:
        rows = []
        if candidate.exists():
            rows = [dict(r) for r in conn.execute("SELECT * FROM runs WHERE path = ?",
                                                  (str(candidate.resolve()),))]
        if not rows:
            rows = [dict(r) for r in conn.execute("SELECT * FROM runs WHERE name = ? "
                                                  "ORDER BY registered_at DESC",
                                                  (ref,))]
        if not rows:
            known = [r[0] for r in conn.execute("SELECT DISTINCT name FROM runs ORDER BY name")]
            hint = f"known runs: {', '.join(known)}" if known else "the registry is empty"
            raise UserError(f"no registered run named '{ref}' ({hint})", where=str(registry_path(db)))
        if len(rows) > 1:
            raise UserError(f"'{ref}' names {len(rows)} runs; pass the directory instead: "
                            + ", ".join(r["path"] for r in rows), where="RUN")
        run = rows[0]
        run["scores"] = [dict(r) for r in conn.execute(
            "SELECT label, task, metric, value, stderr, n FROM scores WHERE path = ? "
            "ORDER BY task, metric, label",
            (run["path"],))]
    run["config"] = json.loads(run.pop("config_json") or "{}")
    run["manifest"] = json.loads(run.pop("manifest_json") or "{}")
    run["forgetting_tasks"] = json.loads(run["forgetting_tasks"] or "[]")
    run["best_by"] = json.loads(run.pop("best_by_json") or "null")
    run["exists"] = Path(run["path"]).is_dir()
    return run


def leaderboard(task: str, metric: str | None = None, label: str | None = None,
                db: str | Path | None = None, conn: sqlite3.Connection | None = None) -> dict:
    """Every registered evaluation on ``task`` ranked by ``metric`` (default: the task's primary metric).

    ``label`` restricts to ``base`` or ``tuned`` evaluations. Scores on different ``n`` are listed with
    their ``n`` and standard error: a difference smaller than the errors is not a ranking. ``conn`` reads
    through an open connection (a read-only one) instead of opening ``db``.
    """
    if label is not None and label not in ("base", "tuned"):
        raise UserError(f"unknown label '{label}' (use base or tuned)", where="--label")
    with closing(connect(db)) if conn is None else nullcontext(conn) as conn:
        metrics = [r[0] for r in conn.execute("SELECT DISTINCT metric FROM scores WHERE task = ?", (task,))]
        if not metrics:
            tasks = [r[0] for r in conn.execute("SELECT DISTINCT task FROM scores ORDER BY task")]
            raise UserError(f"no registered scores for task '{task}' (tasks with scores: "
                            f"{', '.join(tasks) or 'none'})", where="--task")
        if metric is None:
            metric = headline_metric(metrics)
        elif metric not in metrics:
            with_filter = [m for m in metrics if m.split(",")[0] == metric]
            if len(with_filter) == 1:
                metric = with_filter[0]
            else:
                raise UserError(f"task '{task}' has no metric '{metric}' (available: "
                                f"{', '.join(sorted(metrics))})",
                                where="--metric")
        sql = ("SELECT s.label, s.value, s.stderr, s.n, r.name, r.path, r.model, r.method, r.dataset, "
               "r.finished FROM scores s JOIN runs r ON r.path = s.path WHERE s.task = ? AND s.metric = ?")
        args: list[Any] = [task, metric]
        if label is not None:
            sql += " AND s.label = ?"
            args.append(label)
        rows = [dict(r) for r in conn.execute(sql + " ORDER BY s.value DESC, r.name, s.label", args)]
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    return {"task": task, "metric": metric, "label": label, "rows": rows}
