"""`tunescope serve` in a real browser: Playwright's Python client drives the system's headless chromium
(it never downloads one). The tests open the runs page, filter it, open a run, watch a run train (the
step counter and the curves grow as metrics.jsonl does), select two runs and open their comparison, and
check that no page logs a console error. Each page's screenshot is kept in test-artifacts/serve/ (or
$TUNESCOPE_TEST_ARTIFACTS), whose path the test run prints.

Skips, saying why, where chromium or the playwright package is missing (`make test` installs both).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from serve_fixtures import Served, finished_runs, running_run, train_step
from tunescope.serve.run_index import RunIndex, run_id

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    path = find_chromium()
    if path is None:
        pytest.skip("headless chromium not found (run scripts/install-chromium.sh as root)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


ANNOUNCED: set[Path] = set()


@pytest.fixture
def artifacts(capsys) -> Path:
    folder = Path(os.environ.get("TUNESCOPE_TEST_ARTIFACTS") or REPO / "test-artifacts" / "serve")
    folder.mkdir(parents=True, exist_ok=True)
    if folder not in ANNOUNCED:
        ANNOUNCED.add(folder)
        with capsys.disabled():
            print(f"\n  dashboard screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-browser")
    registry = root / "registry.sqlite"
    alpha, beta, gamma = finished_runs(root, registry, all_reports=True)
    live = running_run(root / "runs", "live-demo", total_steps=40)
    for step in range(1, 4):
        train_step(live, step, task=True)
    served = Served(RunIndex(registry, [root / "runs"]))
    yield {"url": served.url, "alpha": alpha, "beta": beta, "gamma": gamma, "live": live}
    served.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    tab.console_errors = errors
    yield tab
    context.close()


def rows(tab) -> int:
    return tab.locator("table#runs tbody tr[data-run]").count()


def test_runs_page_filter_and_open_a_run(page, site, artifacts):
    page.goto(site["url"] + "/")
    assert rows(page) == 4
    assert (page.locator(f'tr[data-run="{run_id(site["alpha"].resolve())}"] .badge.good').inner_text()
            == "significant")
    page.screenshot(path=str(artifacts / "runs.png"))
    page.select_option("select[name=method]", "dora")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**method=dora**")
    assert rows(page) == 1 and page.locator("a.run-link").inner_text() == "gamma-s1"
    page.screenshot(path=str(artifacts / "runs-filtered.png"))
    page.goto(site["url"] + "/")
    page.click("a.run-link:text-is('alpha')")
    page.wait_for_url(f"**/runs/{run_id(site['alpha'].resolve())}")
    report = page.frame_locator("#report")
    sync_api.expect(report.locator("h1")).to_contain_text("fine-tuned")
    page.screenshot(path=str(artifacts / "run.png"), full_page=True)
    assert page.console_errors == []


def test_watch_a_run_training(page, site, artifacts):
    page.goto(f"{site['url']}/runs/{run_id(site['live'].resolve())}")
    sync_api.expect(page.locator("#live-step")).to_have_text("3")
    assert page.locator("#live-total").inner_text() == "40"
    points_before = int(page.locator("#loss-chart").get_attribute("data-points"))
    stop = threading.Event()

    def train() -> None:  # what the training loop appends, one optimizer step at a time
        for step in range(4, 41):
            if stop.wait(0.25):
                return
            train_step(site["live"], step, task=True)

    writer = threading.Thread(target=train, daemon=True)
    writer.start()
    try:
        page.wait_for_function("() => Number(document.getElementById('live-step').textContent) >= 12",
                               timeout=20_000)
        assert int(page.locator("#loss-chart").get_attribute("data-points")) > points_before
        page.wait_for_function("() => Number(document.getElementById('live-step').textContent) >= 20",
                               timeout=20_000)
        assert int(page.locator("#task-chart").get_attribute("data-points")) >= 2
        assert (page.locator("#live-eta").inner_text() != "—"
                and page.locator("#live-status").inner_text() == "running")
        assert page.locator("#loss-chart polyline").count() == 2  # train and validation loss
        page.screenshot(path=str(artifacts / "live.png"), full_page=True)
    finally:
        stop.set()
        writer.join()
    assert page.console_errors == []


def test_select_two_runs_and_compare(page, site, artifacts):
    page.goto(site["url"] + "/")
    page.check("input[aria-label='select alpha']")
    page.check("input[aria-label='select beta']")
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    comparison = page.frame_locator("#comparison")
    sync_api.expect(comparison.locator("h1")).to_contain_text("Comparison of 4 evaluations", timeout=60_000)
    assert "tunescope compare" in page.locator("#command").inner_text()
    page.screenshot(path=str(artifacts / "compare.png"), full_page=True)
    page.goto(page.locator("#permalink").get_attribute("href"))  # the link reproduces it
    sync_api.expect(page.frame_locator("#comparison").locator("h1")).to_contain_text(
        "Comparison of 4 evaluations")
    assert page.console_errors == []


def test_grid_and_leaderboard_pages(page, site, artifacts):
    page.goto(site["url"] + "/grids")
    page.click("table#grids a")
    sync_api.expect(page.frame_locator("#grid-report").locator("h1")).to_have_text("Grid g report")
    assert page.locator("table#cells tbody tr").count() == 1
    page.screenshot(path=str(artifacts / "grid.png"), full_page=True)
    page.goto(site["url"] + "/leaderboard?task=heldout")
    assert page.locator("table#leaderboard tbody tr").count() == 6  # three runs, base and tuned
    page.screenshot(path=str(artifacts / "leaderboard.png"), full_page=True)
    assert page.console_errors == []
