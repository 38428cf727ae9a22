"""`tunescope serve` over HTTP: the pages, server-side filtering / sorting / paging, live progress, the config
diff, the comparison, grids and leaderboard, and that it changes nothing on disk."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from serve_fixtures import XSS_NAME, Served, finished_runs, http_get, running_run, train_step
from tunescope.serve.run_index import RunIndex, run_id
from tunescope.store import registry as run_registry

ROW = re.compile(r'<tr data-run="([0-9a-f]{16})">')


def tree_digest(root: Path) -> str:
    """Names, sizes and contents of every file under root (the registry included)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith(("-shm", "-wal")):
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    registry = root / "registry.sqlite"
    alpha, beta, gamma = finished_runs(root, registry)
    xss_folder = root / "runs" / "xss"
    xss_folder.mkdir()
    run_registry.insert_record({"path": str(xss_folder.resolve()), "name": XSS_NAME,
                                "model": "<b>bold-model</b>", "dataset": "<script>alert('data')</script>",
                                "method": "lora", "scores": []},
                               registry)
    live = running_run(root / "runs", "live")
    index = RunIndex(registry, [root / "runs"])
    served = Served(index)
    yield {"root": root, "registry": registry, "url": served.url, "alpha": alpha, "beta": beta,
           "gamma": gamma, "live": live, "xss": xss_folder}
    served.stop()


def rid(path: Path) -> str:
    return run_id(path.resolve())


def get(site, path: str, **kw) -> tuple[int, dict, str]:
    return http_get(site["url"], path, **kw)


def rows(body: str) -> list[str]:
    return ROW.findall(body)


def test_runs_page_lists_every_run_with_its_headline_comparison(site):
    status, headers, body = get(site, "/")
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    assert set(rows(body)) == {rid(site[k]) for k in ("alpha", "beta", "gamma", "xss", "live")}
    alpha_row = body[body.index(f'data-run="{rid(site["alpha"])}"'):].split("</tr>")[0]
    # alpha: heldout exact match 10% → 60% on 20 items, the report's McNemar test (Holm) significant
    assert "10.00% ± 6.88%" in alpha_row and "60.00% ± 11.24%" in alpha_row and "+50.00" in alpha_row
    assert "significant" in alpha_row and "not significant" not in alpha_row
    live_row = body[body.index(f'data-run="{rid(site["live"])}"'):].split("</tr>")[0]
    assert "status-running" in live_row and "tiny-live" in live_row


@pytest.mark.parametrize("query, expected", [
    ("?method=dora", ["gamma"]),
    ("?model=tiny-other", ["beta"]),
    ("?grid=g", ["gamma"]),
    ("?status=running", ["live"]),
    ("?task=hellaswag", ["alpha", "beta", "gamma"]),
    ("?q=ALP", ["alpha"]),
    ("?method=lora&model=smollm2-135m-instruct", ["alpha"]),
])
def test_runs_are_filtered_on_the_server(site, query, expected):
    status, _, body = get(site, "/" + query)
    assert status == 200
    assert sorted(rows(body)) == sorted(rid(site[k]) for k in expected)


def test_runs_sort_by_any_column_and_page(site):
    _, _, body = get(site, "/?sort=delta&dir=desc&task=heldout")
    order = rows(body)
    assert order[-1] == rid(site["beta"])  # +5 points after the two +50s
    _, _, asc = get(site, "/?sort=name&dir=asc")
    names = re.findall(r'class="run-link" href="/runs/[0-9a-f]+">([^<]*)</a>', asc)
    assert names == sorted(names, key=str.lower) and len(names) == 5
    pages = [rows(get(site, f"/?sort=name&dir=asc&per=2&page={n}")[2]) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == rows(asc)
    assert "page 1 of 3" in get(site, "/?per=2")[2]


def test_run_page_shows_report_config_and_scores(site):
    status, _, body = get(site, f"/runs/{rid(site['alpha'])}")
    assert status == 200
    assert f'src="/runs/{rid(site["alpha"])}/files/report.html"' in body
    assert "learning_rate" in body and "heldout" in body and "exact_match,strict-match" in body
    status, headers, report = get(site, f"/runs/{rid(site['alpha'])}/files/report.html")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert ("sandbox" in headers["content-security-policy"]
            and "script-src 'none'" in headers["content-security-policy"])
    assert report == (site["alpha"] / "report.html").read_text(encoding="utf-8")


def test_config_diff_against_another_run(site):
    status, _, body = get(site, f"/runs/{rid(site['alpha'])}?diff=beta")
    assert status == 200
    diff = body[body.index('id="diff"'):]
    assert "<code>model.name</code>" in diff and "tiny-other" in diff and "smollm2-135m-instruct" in diff
    assert "<code>name</code>" in diff and "<code>learning_rate</code>" not in diff
    _, _, unknown = get(site, f"/runs/{rid(site['alpha'])}?diff=nobody")
    assert "no registered run is named" in unknown
    status, headers, _ = get(site, f"/diff?run={rid(site['alpha'])}&run={rid(site['gamma'])}")
    assert status == 303 and headers["location"] == f"/runs/{rid(site['alpha'])}?diff={rid(site['gamma'])}"


def test_compare_page_runs_the_compare_recipe_and_links_to_itself(site):
    a, b = rid(site["alpha"]), rid(site["beta"])
    status, _, body = get(site, f"/compare?run={a}&run={b}")
    assert status == 200
    assert f"tunescope compare {site['alpha'].resolve()} {site['beta'].resolve()}" in body
    assert f'href="{site["url"]}/compare?run={a}&amp;run={b}"' in body
    status, headers, report = get(site, f"/compare/report?run={a}&run={b}")
    assert status == 200 and "sandbox" in headers["content-security-policy"]
    assert "Comparison of 4 evaluations" in report and "McNemar" in report
    status, _, one = get(site, f"/compare?run={a}")
    assert status == 400 and "two or more runs" in one


def test_grid_and_leaderboard_pages(site):
    _, _, grids = get(site, "/grids")
    gid = run_id(site["gamma"].resolve().parent)
    assert f'href="/grids/{gid}"' in grids
    status, _, grid = get(site, f"/grids/{gid}")
    assert status == 200 and f'href="/runs/{rid(site["gamma"])}"' in grid and f"/grids/{gid}/report" in grid
    status, headers, report = get(site, f"/grids/{gid}/report")
    assert status == 200 and "Grid g report" in report and "sandbox" in headers["content-security-policy"]
    status, _, board = get(site, "/leaderboard?task=heldout&label=tuned")
    assert status == 200
    expected = run_registry.leaderboard("heldout", label="tuned", db=site["registry"])["rows"]
    shown = re.findall(r'<td><a href="/runs/([0-9a-f]+)">', board)
    assert shown == [run_id(r["path"]) for r in expected] and len(shown) == 3


def test_live_progress_reads_new_records_from_an_offset(site, tmp_path):
    live = running_run(site["root"] / "runs", "live-offsets", total_steps=10)
    index_id = rid(live)
    status, _, body = get(site, f"/api/runs/{index_id}/progress?offset=0")
    first = json.loads(body)
    assert status == 200 and first["status"] == "running" and first["started"]
    assert ([r["kind"] for r in first["records"]] == ["setup"]
            and first["records"][0]["total_steps_planned"] == 10)
    train_step(live, 1)
    with (live / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "step": 2')  # a line still being written is left for the next poll
    second = json.loads(get(site, f"/api/runs/{index_id}/progress?offset={first['offset']}")[2])
    assert [(r["kind"], r.get("step")) for r in second["records"]] == [("train", 1)]
    with (live / "metrics.jsonl").open("a") as f:
        f.write(', "loss": 1.0, "elapsed_s": 1.0}\n')
    third = json.loads(get(site, f"/api/runs/{index_id}/progress?offset={second['offset']}")[2])
    assert [(r["kind"], r["step"], r["loss"]) for r in third["records"]] == [("train", 2, 1.0)]
    # a resumed run rewinds
    (live / "metrics.jsonl").write_text('{"kind": "setup", "total_steps_planned": 10}\n')
    fourth = json.loads(get(site, f"/api/runs/{index_id}/progress?offset={third['offset']}")[2])
    assert fourth["reset"] and [r["kind"] for r in fourth["records"]] == ["setup"]
    final = live.parent / "live-offsets"
    live.rename(final)  # the run completed
    done = json.loads(get(site, f"/api/runs/{index_id}/progress?offset=0")[2])
    assert done["status"] == "finished" and done["final_url"] == f"/runs/{rid(final)}"
    shutil.rmtree(final)


def test_an_unfinished_run_whose_process_is_gone_is_interrupted(site):
    import subprocess
    import sys
    import time

    from tunescope.serve.partial_runs import SCAN_EVERY_S

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    folder = running_run(site["root"] / "runs", "orphan", pid=int(gone.stdout))
    try:
        time.sleep(SCAN_EVERY_S + 0.1)  # the runs table rescans the folders once a second
        _, _, body = get(site, "/?status=interrupted")
        assert rows(body) == [rid(folder)]
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "status": "failed"}))
        time.sleep(SCAN_EVERY_S + 0.1)
        assert rows(get(site, "/?status=failed")[2]) == [rid(folder)]
    finally:
        shutil.rmtree(folder)


def test_serving_changes_nothing_on_disk(site):
    before = tree_digest(site["root"])
    a, b = rid(site["alpha"]), rid(site["beta"])
    for path in ("/", "/?sort=p", f"/runs/{a}", f"/runs/{a}?diff=beta", f"/compare?run={a}&run={b}",
                 f"/compare/report?run={a}&run={b}", "/grids", "/leaderboard", f"/runs/{a}/files/report.md",
                 f"/api/runs/{rid(site['live'])}/progress?offset=0"):
        assert get(site, path)[0] in (200, 303), path
    assert tree_digest(site["root"]) == before


def test_a_run_folder_deleted_while_shown_gives_a_clear_page(tmp_path):
    registry = tmp_path / "registry.sqlite"
    alpha, beta, _ = finished_runs(tmp_path, registry, with_report=False)
    served = Served(RunIndex(registry, [tmp_path / "runs"]))
    try:
        assert http_get(served.url, f"/runs/{rid(alpha)}")[0] == 200
        shutil.rmtree(alpha)
        status, _, body = http_get(served.url, f"/runs/{rid(alpha)}")
        assert status == 200 and "no longer exists" in body and "exact_match,strict-match" in body
        assert "folder missing" in http_get(served.url, "/")[2]
        status, _, body = http_get(served.url, f"/runs/{rid(alpha)}/files/config.yaml")
        assert status == 404 and "no longer exists" in body and "Traceback" not in body
        status, _, body = http_get(served.url, f"/compare?run={rid(alpha)}&run={rid(beta)}")
        assert status == 400 and "no longer exists" in body
        status, _, body = http_get(served.url, "/runs/0123456789abcdef")
        assert status == 404 and "deleted or moved" in body
        live = running_run(tmp_path / "runs", "vanishing")
        assert http_get(served.url, f"/runs/{rid(live)}")[0] == 200
        shutil.rmtree(live)
        gone = json.loads(http_get(served.url, f"/api/runs/{rid(live)}/progress?offset=0")[2])
        assert gone["status"] == "gone"
    finally:
        served.stop()


def test_registry_records_the_headline_comparison(site):
    run = run_registry.get_run(str(site["alpha"]), db=site["registry"])
    report = json.loads((site["alpha"] / "report.json").read_text())
    first = report["evaluation"]["rows"][report["evaluation"]["headline"][0]]
    assert json.loads(run["headline_json"]) == {k: first.get(k) for k in run_registry.HEADLINE_FIELDS}
    assert json.loads(run["headline_json"])["task"] == "heldout"


def test_runs_registered_by_an_earlier_version_show_their_scores_without_a_test(tmp_path):
    import sqlite3

    from tunescope.serve.run_index import Query

    registry = tmp_path / "registry.sqlite"
    alpha, _, _ = finished_runs(tmp_path, registry, with_report=False)
    with sqlite3.connect(registry) as conn:  # the layout before the headline comparison was stored
        conn.execute("ALTER TABLE runs DROP COLUMN headline_json")
        conn.execute("PRAGMA user_version = 3")
    index = RunIndex(registry, [tmp_path / "runs"])
    page = index.query(Query(sort="delta", filters={"task": "heldout"}))
    by_name = {e.name: e.headline for e in page.rows}
    assert by_name["alpha"]["task"] == "heldout" and by_name["alpha"]["metric"] == "exact_match,strict-match"
    assert (by_name["alpha"]["base"] == pytest.approx(0.1)
            and by_name["alpha"]["delta_points"] == pytest.approx(50))
    assert by_name["alpha"]["p_holm"] is None
    assert [e.name for e in page.rows][-1] == "beta"
    assert registry.stat().st_size > 0 and run_registry.connect_read_only(registry).execute(
        "PRAGMA user_version").fetchone()[0] == 3  # read, never migrated


def test_a_run_registered_while_serving_appears(tmp_path):
    import time

    from synthetic_run import build_run

    registry = tmp_path / "registry.sqlite"
    finished_runs(tmp_path, registry, with_report=False)
    served = Served(RunIndex(registry, [tmp_path / "runs"]))
    try:
        assert len(rows(http_get(served.url, "/")[2])) == 3
        late = build_run(tmp_path / "runs", "late", n_train=20, n_heldout=10, n_mc=20)
        run_registry.register_run(late, db=registry)
        status, _, body = http_get(served.url, f"/runs/{rid(late)}")  # asked for by id: waits for the reload
        assert status == 200 and "late" in body
        deadline = time.monotonic() + 30
        while len(rows(http_get(served.url, "/")[2])) != 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # the table reloads in the background
        assert rid(late) in rows(http_get(served.url, "/")[2])
    finally:
        served.stop()
