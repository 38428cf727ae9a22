"""The demo's own output (`make demo` / `tunescope demo`, runs/demo) reads as written for people and states
no verdict stronger than its test. Runs where a demo run exists: TUNESCOPE_DEMO_RUN=<run dir>, or runs/demo
under the repository root; skips otherwise (the demo takes minutes, so the test suite does not run it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from readable import assert_no_verdict_stronger_than_its_test, assert_run_pages_readable

ROOT = Path(__file__).resolve().parents[1]


def demo_run() -> Path:
    path = Path(os.environ.get("TUNESCOPE_DEMO_RUN") or ROOT / "runs" / "demo")
    if not (path / "report.json").is_file():
        pytest.skip(f"no demo output at {path} (run `make demo`, or set TUNESCOPE_DEMO_RUN to a demo run "
                    "directory)")
    return path


def test_demo_pages_are_written_for_people():
    assert_run_pages_readable(demo_run())


def test_demo_states_no_verdict_stronger_than_its_test():
    run = demo_run()
    assert_no_verdict_stronger_than_its_test(json.loads((run / "report.json").read_text(encoding="utf-8")))
