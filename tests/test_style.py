"""The configured lint rules hold across the code base, the line length (110) included: a line that is too
long, an unused import or an unsorted import block fails the suite, not only `make lint`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    # ruff is in the test extras (requirements/test.lock); a missing ruff is a broken environment, not a skip.
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks",
                           "scripts"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_line_over_110_characters_is_reported():
    # Guards the rule itself: E501 going back on pyproject's ignore list, or the limit moving, fails here.
    at_the_limit = "x = " + repr("a" * 104)
    over_it = "y = " + repr("a" * 105)
    assert (len(at_the_limit), len(over_it)) == (110, 111)
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           "--stdin-filename", "src/tunescope/example.py", "-"],
                          cwd=ROOT, input=f"{at_the_limit}\n{over_it}\n", capture_output=True, text=True)
    assert done.returncode == 1
    assert "example.py:2:111: E501" in done.stdout and "example.py:1:" not in done.stdout, done.stdout
