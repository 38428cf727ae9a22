"""Runs through the real pipeline in subprocesses, one of them SIGKILLed mid-training and resumed: the
harness of the resume tests.

`start` runs `recipes.run.run` on the tiny model with the given `--set` overrides. A run started with
`hold_at=N` writes a marker file when training reaches step N and then sleeps until `kill_when_held`
SIGKILLs it. With `report=False` a run stops just before its report, its folder still `.<name>.partial/`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
from tunescope.recipes import run as pipeline
from tunescope.config.loading import load_config

out, name, model, resume, hold_at, marker, report, overrides = sys.argv[1:9]

class Hold(pipeline.ProgressSink):
    def advance(self, what, done, total):
        if what == "train" and done == int(hold_at):
            Path(marker).write_text(str(done))
            time.sleep(600)  # the test SIGKILLs us here

    def stage(self, name):
        if name == "report" and report == "0":
            os._exit(0)

cfg = load_config(None, [f"output_dir={out}", f"name={name}", f"model.name={model}", *json.loads(overrides)])
pipeline.run(cfg, resume=resume == "1", progress=Hold())
"""


class KillResume:
    def __init__(self, tmp: Path, model: Path, overrides: list[str]):
        self.tmp, self.model, self.overrides = tmp, model, overrides
        self.out = tmp / "runs"
        self.marker = tmp / "held"
        self.script = tmp / "run_pipeline.py"
        self.script.write_text(SCRIPT)

    def start(self, name: str, *, resume: bool = False, hold_at: int = -1,
              report: bool = True) -> subprocess.Popen:
        env = {**os.environ, "TUNESCOPE_REGISTRY": str(self.tmp / "registry.sqlite"), "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": "1"}
        args = [sys.executable, str(self.script), str(self.out), name, str(self.model),
                "1" if resume else "0", str(hold_at), str(self.marker), "1" if report else "0",
                json.dumps(self.overrides)]
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill_when_held(self, proc: subprocess.Popen, timeout: float = 300) -> None:
        """SIGKILL `proc` once it has written the marker (reached its `hold_at` step)."""
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its hold step"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    @staticmethod
    def finish(proc: subprocess.Popen) -> None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
