"""`tunescope serve`'s defences: files only from inside registered run folders (traversal, encoded
separators and symlinks out get 404), HTML in run names and data is inert, it binds to 127.0.0.1 unless
told otherwise, and any other host needs a token that every request must present."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from serve_fixtures import XSS_NAME, Served, http_get, running_run
from synthetic_run import build_run
from tunescope.core.errors import UserError
from tunescope.serve import server
from tunescope.serve.run_index import RunIndex, run_id
from tunescope.serve.security import REPORT_POLICY, file_inside
from tunescope.store import registry as run_registry


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-security")
    registry = root / "registry.sqlite"
    run = build_run(root / "runs", "victim", n_train=20, n_heldout=10, n_mc=20)
    run_registry.register_run(run, db=registry)
    (root / "secret.txt").write_text("outside every run folder")
    (root / "runs" / "unregistered").mkdir()
    (root / "runs" / "unregistered" / "notes.txt").write_text("not a registered run")
    os.symlink(root / "secret.txt", run / "link-out.txt")
    os.symlink(run / "config.yaml", run / "link-in.yaml")
    xss_run = root / "runs" / "xss"
    xss_run.mkdir()
    run_registry.insert_record({"path": str(xss_run.resolve()), "name": XSS_NAME,
                                "model": "<b>bold-model</b>", "dataset": "<script>alert('data')</script>",
                                "method": "lora", "scores": []},
                               registry)
    served = Served(RunIndex(registry, [root / "runs"]))
    yield {"root": root, "registry": registry, "url": served.url, "run": run, "rid": run_id(run.resolve()),
           "xss": run_id(xss_run.resolve())}
    served.stop()


@pytest.mark.parametrize("relative", [
    "../../secret.txt",
    "..%2F..%2Fsecret.txt",
    "%2e%2e/%2e%2e/secret.txt",
    "eval%2Fbase%2Fresults.json",
    "eval%5Cbase%5Cresults.json",
    "eval//base/results.json",
    "./config.yaml",
    "link-out.txt",
    "eval/../../unregistered/notes.txt",
    "..",
    "eval",
])
def test_paths_that_leave_the_run_folder_or_are_not_files_get_404(site, relative):
    status, _, body = http_get(site["url"], f"/runs/{site['rid']}/files/{relative}")
    assert status == 404
    assert "outside every run folder" not in body and "not a registered run" not in body


def test_files_inside_the_run_folder_are_served_as_inert_text(site):
    status, headers, body = http_get(site["url"], f"/runs/{site['rid']}/files/eval/base/results.json")
    assert status == 200 and headers["content-type"].startswith("text/plain") and '"results"' in body
    assert headers["x-content-type-options"] == "nosniff" and "sandbox" in headers["content-security-policy"]
    # a link that stays inside
    assert http_get(site["url"], f"/runs/{site['rid']}/files/link-in.yaml")[0] == 200


def test_no_route_serves_other_files(site):
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/app.py", "/registry.sqlite",
                 f"/runs/{run_id(site['root'] / 'runs' / 'unregistered')}/files/notes.txt",
                 "/runs/../secret.txt", "/grids/x/report"):
        status, _, body = http_get(site["url"], path)
        assert status in (400, 404), path
        assert "root:" not in body and "outside every run folder" not in body


def test_file_inside_rejects_every_escape(tmp_path):
    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    assert file_inside(root, "sub/a.txt", b"/runs/x/files/sub/a.txt") == (root / "sub" / "a.txt").resolve()
    for rel, raw in [("../x", b"/../x"), ("sub/a.txt", b"/sub%2Fa.txt"), ("sub\\a.txt", b"/sub%5Ca.txt"),
                     ("sub/a.txt\x00", b"/sub/a.txt%00"), ("", b"/"), ("sub", b"/sub")]:
        assert file_inside(root, rel, raw) is None, rel


def test_html_in_run_names_and_data_is_inert(site):
    status, _, body = http_get(site["url"], "/")
    assert status == 200
    assert XSS_NAME not in body and "<script>alert" not in body and "<b>bold-model</b>" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "&lt;b&gt;bold-model&lt;/b&gt;" in body
    status, _, page = http_get(site["url"], f"/runs/{site['xss']}")
    assert status == 200 and XSS_NAME not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>alert" not in page
    # the pages run only the dashboard's own script files: no inline script anywhere
    assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", body + page)


def test_the_report_policy_is_the_one_the_report_templates_carry():
    templates = Path(__file__).resolve().parents[1] / "src" / "tunescope" / "report" / "templates"
    for name in ("report.html.j2", "compare.html.j2", "grid.html.j2"):
        assert f'content="{REPORT_POLICY}"' in (templates / name).read_text()


def test_requests_addressed_to_another_host_name_are_refused(site):
    status, _, _ = http_get(site["url"], "/", headers={"Host": "attacker.example:8765"})
    assert status == 400
    assert http_get(site["url"], "/", headers={"Host": "localhost"})[0] == 200


def test_binds_to_localhost_by_default_and_another_host_needs_a_token(tmp_path, monkeypatch):
    registry = tmp_path / "registry.sqlite"
    run_registry.connect(registry).close()
    sock, _, address = server.prepare(port=0, registry=registry, runs_dir=tmp_path)
    try:
        assert sock.getsockname()[0] == "127.0.0.1" and address.startswith("http://127.0.0.1:")
    finally:
        sock.close()
    with pytest.raises(UserError, match="needs --token"):
        server.prepare(host="0.0.0.0", port=0, registry=registry, runs_dir=tmp_path)
    warnings: list[str] = []
    sock, _, address = server.prepare(host="0.0.0.0", port=0, registry=registry, runs_dir=tmp_path,
                                      token="s3cret", warn=warnings.append)
    try:
        assert sock.getsockname()[0] == "0.0.0.0" and address.endswith("/?token=s3cret")
        assert len(warnings) == 1 and "warning" in warnings[0] and "other machines" in warnings[0]
    finally:
        sock.close()
    assert server.DEFAULT_HOST == "127.0.0.1"


def test_every_request_must_present_the_token(tmp_path):
    registry = tmp_path / "registry.sqlite"
    run_registry.connect(registry).close()
    live = running_run(tmp_path / "runs", "t")
    served = Served(RunIndex(registry, [tmp_path / "runs"]), token="s3cret")
    try:
        for path in ("/", "/static/serve.css", f"/api/runs/{run_id(live.resolve())}/progress",
                     "/leaderboard"):
            assert http_get(served.url, path)[0] == 401, path
        assert http_get(served.url, "/?token=wrong")[0] == 401
        status, headers, _ = http_get(served.url, "/?token=s3cret&q=t")
        assert status == 303 and headers["location"] == "/?q=t"
        cookie = headers["set-cookie"].split(";")[0]
        assert ("httponly" in headers["set-cookie"].lower()
                and "samesite=strict" in headers["set-cookie"].lower())
        assert http_get(served.url, "/", headers={"Cookie": cookie})[0] == 200
        assert http_get(served.url, "/", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert http_get(served.url, "/", headers={"Cookie": "tunescope_token=wrong"})[0] == 401
    finally:
        served.stop()
