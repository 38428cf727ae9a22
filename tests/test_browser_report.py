"""report.html in a real browser (headless chromium): it renders, logs nothing, and runs no model text.

Skips, saying why, where no chromium is installed (`make test` runs scripts/install-chromium.sh first).
Console messages are read from chromium's own log (``--enable-logging=stderr --v=0`` writes every
console message as a ``CONSOLE`` line); a control page that does log proves the detector works.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from synthetic_run import add_contamination, build_run
from tunescope.recipes import run as pipeline

pytestmark = pytest.mark.browser

INJECTED = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
CONSOLE = re.compile(r"CONSOLE[(:].*", re.MULTILINE)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("headless chromium not found (install it with `apt-get install chromium`, "
                    "or run scripts/install-chromium.sh as root)")
    return path


def browse(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = build_run(root, "browser", n_train=30, n_heldout=20, n_mc=40, inject_response=INJECTED)
    # Two held-out questions trained on, one of them with the payload in its training text.
    add_contamination(run, {2: INJECTED, 5: "and more"})
    return pipeline.write_report(run, register=False)["html"]


def title_of(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, re.S)
    return m.group(1) if m else ""


def test_report_renders_with_no_console_messages(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    proc = browse(chromium, report.as_uri(), "--window-size=1280,2400", f"--screenshot={shot}")
    assert shot.is_file(), proc.stderr[-2000:]
    assert CONSOLE.findall(proc.stderr) == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").resize((320, 600)).getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50  # text, tables and plots, not a blank page


def test_model_text_shows_as_text_and_runs_nothing(chromium, report):
    expected_title = title_of(report.read_text())
    proc = browse(chromium, report.as_uri(), "--virtual-time-budget=3000", "--dump-dom")
    dom = proc.stdout
    assert "<h1>" in dom, proc.stderr[-2000:]
    assert title_of(dom) == expected_title and "pwned" not in title_of(dom)
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x" in dom
    assert '<img src="x"' not in dom and "<script>document.title" not in dom
    assert CONSOLE.findall(proc.stderr) == []


def test_contamination_section_shows_items_beside_their_training_text(chromium, report):
    proc = browse(chromium, report.as_uri(), "--virtual-time-budget=3000", "--dump-dom")
    dom = proc.stdout
    section = dom[dom.index('id="contamination"'):dom.index('id="conclusions"')]
    assert "task heldout" in section and "Clean subset" in section
    assert section.count("<mark>") >= 4  # each flagged item and its training neighbour, span highlighted
    assert "<script>" not in section and CONSOLE.findall(proc.stderr) == []


def test_escaping_alone_stops_the_payload_and_the_detector_works(chromium, report, tmp_path):
    """Without the CSP safety net the page still runs no model text; a control script proves logging works."""
    html = report.read_text()
    no_csp = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert no_csp != html
    page = tmp_path / "no-csp.html"
    page.write_text(no_csp.replace("</body>", "<script>console.error('control-message')</script></body>"))
    proc = browse(chromium, page.as_uri(), "--virtual-time-budget=3000", "--dump-dom")
    assert title_of(proc.stdout) == title_of(html)
    messages = CONSOLE.findall(proc.stderr)
    assert len(messages) == 1 and "control-message" in messages[0], messages


@pytest.fixture(scope="module")
def other_pages(tmp_path_factory, report) -> dict[str, Path]:
    """comparison.html and grid.html from fixture runs (the report's run and a second one; a built grid)."""
    from grid_fixtures import synthetic_grid
    from synthetic_run import add_task_curves
    from tunescope.grid.aggregate import analyse_grid
    from tunescope.recipes import compare as compare_recipe
    from tunescope.report.grid import render_grid

    root = tmp_path_factory.mktemp("browser-pages")
    other = add_task_curves(build_run(root, "other", n_train=10, n_heldout=20, n_mc=40),
                            {"heldout": {0: 0.1, 20: 0.5, 40: 0.4}})
    compared = compare_recipe.compare([report.parent, other], output=root / "cmp",
                                      overrides=["report.bootstrap_resamples=200"])
    grid = render_grid(analyse_grid(synthetic_grid(root / "grid")), root / "grid")
    return {"comparison": compared["html"], "grid": grid["html"]}


@pytest.mark.parametrize("page", ["comparison", "grid"])
def test_comparison_and_grid_pages_render_readably_with_no_console_messages(chromium, other_pages, page,
                                                                            tmp_path):
    from readable import assert_readable

    shot = tmp_path / f"{page}.png"
    proc = browse(chromium, other_pages[page].as_uri(), "--window-size=1280,2400", f"--screenshot={shot}")
    assert shot.is_file(), proc.stderr[-2000:]
    assert CONSOLE.findall(proc.stderr) == []
    dom = browse(chromium, other_pages[page].as_uri(), "--virtual-time-budget=3000", "--dump-dom").stdout
    assert "<h1>" in dom
    assert_readable(dom, html=True, where=f"{page}.html as chromium shows it")
