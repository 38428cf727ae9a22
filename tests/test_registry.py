"""The SQLite run registry: registration, queries, the CLI, and no lost rows under concurrent writers."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from synthetic_run import build_run
from tunescope.core.errors import UserError
from tunescope.recipes import run as pipeline
from tunescope.store import registry as run_registry


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(path))
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg")
    return (build_run(root, "r1", heldout_tuned_acc=0.6, n_train=5, with_train_examples=False),
            build_run(root, "r2", heldout_tuned_acc=0.3, n_train=5, with_train_examples=False))


def test_register_list_show_leaderboard(db, two_runs):
    r1, r2 = two_runs
    assert run_registry.registry_path() == db
    for run in (r1, r2, r1):  # registering again refreshes the row, it does not add one
        run_registry.register_run(run)
    runs = run_registry.list_runs()
    assert [r["name"] for r in runs].count("r1") == 1 and len(runs) == 2
    assert all(r["exists"] for r in runs)
    shown = run_registry.get_run("r1")
    assert shown["path"] == str(r1.resolve()) and shown["model"] == "smollm2-135m-instruct"
    assert {(s["label"], s["task"], s["metric"]) for s in shown["scores"]} >= {
        ("base", "heldout", "exact_match,strict-match"), ("tuned", "hellaswag", "acc_norm,none")}
    assert run_registry.get_run(str(r2))["name"] == "r2"
    board = run_registry.leaderboard("heldout")
    assert board["metric"] == "exact_match,strict-match"
    assert [(r["name"], r["label"]) for r in board["rows"]][:2] == [("r1", "tuned"), ("r2", "tuned")]
    assert [r["rank"] for r in board["rows"]] == [1, 2, 3, 4]
    assert run_registry.leaderboard("hellaswag", metric="acc", label="base")["metric"] == "acc,none"
    with pytest.raises(UserError, match=r"no registered scores for task 'gsm8k'.*heldout"):
        run_registry.leaderboard("gsm8k")
    with pytest.raises(UserError, match="no metric 'bleu'"):
        run_registry.leaderboard("heldout", metric="bleu")
    with pytest.raises(UserError, match="no registered run named 'nope'"):
        run_registry.get_run("nope")


def test_report_registers_and_ambiguous_names_are_refused(db, two_runs, tmp_path):
    r1, _ = two_runs
    pipeline.write_report(r1)  # `tunescope report` registers the run
    row = run_registry.get_run("r1")
    # The verdicts and the losses are the report's: validation loss 0.8 + 1.2·exp(-step/8) at
    # steps 5, 10, ..., 40 (three points in the tail: falling, but the slope test does not reject, so
    # further training is inconclusive).
    assert (row["further_training"] == "inconclusive" and row["overfitting"] == 0
            and row["forgetting_tasks"] == [])
    assert row["val_loss_first"] == pytest.approx(0.8 + 1.2 * math.exp(-5 / 8))
    assert row["val_loss_best"] == pytest.approx(0.8 + 1.2 * math.exp(-5))
    assert (row["steps"], row["tokens_supervised"], row["cost_usd"]) == (40, 36000, 0.0042)
    other = build_run(tmp_path / "elsewhere", "r1", n_train=5, with_eval=False)
    run_registry.register_run(other)
    with pytest.raises(UserError, match="names 2 runs; pass the directory"):
        run_registry.get_run("r1")


def test_registry_problems_never_fail_a_run(tmp_path, monkeypatch, two_runs):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(blocker / "registry.sqlite"))  # parent is a file
    assert pipeline.register_or_warn(two_runs[0]) is None


def test_unfinished_run_is_not_registered(db, tmp_path):
    run = build_run(tmp_path, "half", n_train=5, with_eval=False)
    (run / "manifest.json").write_text('{"status": "running"}')
    with pytest.raises(UserError, match="not finished"):
        run_registry.register_run(run)


def test_waits_for_a_held_write_lock(db, monkeypatch):
    run_registry.connect().close()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO runs (path, name, registered_at) VALUES ('/x/holder', 'holder', 'then')")
    events, errors = [], []
    # The holder commits only once the insert has begun its write transaction, which the held lock blocks.
    insert_begins = threading.Event()
    real_connect = run_registry.connect

    def traced_connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: insert_begins.set() if sql.startswith("BEGIN IMMEDIATE")
                                else None)
        return conn

    def insert() -> None:
        try:
            run_registry.insert_record({"path": "/x/locked", "name": "locked", "scores": []})
            events.append("insert returns")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    monkeypatch.setattr(run_registry, "connect", traced_connect)
    writer = threading.Thread(target=insert)
    writer.start()
    assert insert_begins.wait(timeout=120), "the insert never began its transaction"
    events.append("holder commits")  # before COMMIT: the lock is still held when this is recorded
    holder.execute("COMMIT")
    writer.join()
    holder.close()
    assert not errors, errors
    # The insert neither failed nor slipped in: it waited for the other transaction, then wrote.
    assert events == ["holder commits", "insert returns"]
    assert sorted(r["name"] for r in run_registry.list_runs()) == ["holder", "locked"]


WRITER = textwrap.dedent("""
    import sys, time
    from tunescope.store import registry as run_registry
    proc, n, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        run_registry.insert_record({"path": f"/runs/p{proc}-{i}", "name": f"p{proc}-{i}", "model": "m",
                                "scores": [{"label": "tuned", "task": "gsm8k",
                                            "metric": "exact_match,strict-match",
                                            "value": (proc * n + i) / 1000, "stderr": 0.01, "n": 100}]})
""")


def test_concurrent_writers_lose_no_rows(db):
    procs_n, per_proc = 6, 15
    start = time.time() + 1.5  # every writer starts at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), str(per_proc), str(start)],
                              env={**os.environ, "TUNESCOPE_REGISTRY": str(db)}, stderr=subprocess.PIPE,
                              text=True)
             for p in range(procs_n)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == procs_n * per_proc
        assert conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == procs_n * per_proc
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(run_registry.leaderboard("gsm8k")["rows"]) == procs_n * per_proc


def test_cli_runs_commands(db, two_runs):
    r1, r2 = two_runs
    run_registry.register_run(r1)
    run_registry.register_run(r2)
    env = {**os.environ, "TUNESCOPE_REGISTRY": str(db), "COLUMNS": "250"}

    # The four commands run side by side (read-only, so they must not block each other either).
    commands = {"list": ("list",), "board": ("leaderboard", "--task", "heldout"), "show": ("show", "r2"),
                "missing": ("show", "zzz")}
    procs = {k: subprocess.Popen([sys.executable, "-m", "tunescope.cli", "runs", *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k, args in commands.items()}
    out = {k: (p.communicate(timeout=120), p.returncode) for k, p in procs.items()}
    (stdout, stderr), rc = out["list"]
    assert rc == 0 and "r1" in stdout and "r2" in stdout, stderr
    (stdout, stderr), rc = out["board"]
    assert rc == 0 and "60.00% ± 7.84%" in stdout, stderr
    (stdout, stderr), rc = out["show"]
    assert rc == 0 and "exact_match,strict-match" in stdout, stderr
    (stdout, stderr), rc = out["missing"]
    assert rc == 2 and "no registered run named 'zzz'" in stderr and "Traceback" not in stderr
