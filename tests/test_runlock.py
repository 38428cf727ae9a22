"""The run-folder lock: one name for both folder names, re-entrant in a process, refused to another process
while held, taken over (and said) after its holder died, and alias expansion bounded in YAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunescope.config.safe_yaml import load_yaml
from tunescope.core.errors import UserError
from tunescope.store.lock import lock_path, run_lock

ROOT = Path(__file__).resolve().parents[1]
TRY_LOCK = ("import sys; from tunescope.store.lock import run_lock\n"
            "with run_lock(sys.argv[1]): print('locked')")


def try_in_another_process(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_partial_and_the_final_name_share_one_lock(tmp_path):
    assert lock_path(tmp_path / "t") == lock_path(tmp_path / ".t.partial") == tmp_path / ".t.lock"


def test_held_lock_is_reentrant_here_and_refused_elsewhere(tmp_path):
    with run_lock(tmp_path / "t"):
        with run_lock(tmp_path / ".t.partial"):  # the same folder under its other name: no deadlock
            pass
        record = json.loads((tmp_path / ".t.lock").read_text())
        assert record["pid"] == os.getpid()
        other = try_in_another_process(tmp_path / "t")
        assert other.returncode != 0 and f"PID {os.getpid()}" in other.stderr and "locked" not in other.stdout
    assert not (tmp_path / ".t.lock").exists()
    assert try_in_another_process(tmp_path / "t").stdout.strip() == "locked"


def test_a_stale_lock_is_taken_over_and_said(tmp_path):
    (tmp_path / ".t.lock").write_text(json.dumps({"pid": 999_999, "host": "elsewhere"}))
    said = []
    with run_lock(tmp_path / "t", on_stale=said.append):
        pass
    assert len(said) == 1 and "999999" in said[0] and "elsewhere" in said[0]


def test_existing_only_leaves_no_lock_beside_a_missing_folder(tmp_path):
    with run_lock(tmp_path / "nope", existing_only=True):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, ok", [
    ("a: &x [1, 2]\nb: *x\nc: *x\n", True),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: "
     "[*d, *d, *d]\n",
     False),
    ("a: &a [*a]\n", False),
])
def test_yaml_alias_expansion_is_bounded(text, ok):
    if ok:
        assert load_yaml(text, "f.yaml")["c"] == [1, 2]
    else:
        with pytest.raises(UserError) as err:
            load_yaml(text, "f.yaml")
        assert err.value.where == "f.yaml"
