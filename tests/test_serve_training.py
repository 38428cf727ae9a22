"""The dashboard watching a real training run: `tunescope train` on the tiny model in a subprocess while the
progress API is polled as the run page's script polls it, until the run completes and is registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from serve_fixtures import Served, http_get
from tunescope.config.loading import load_config
from tunescope.serve.run_index import Query, RunIndex
from tunescope.store import registry as run_registry

STEPS = 24


@pytest.mark.slow
def test_progress_of_a_real_training_run(tiny_model_dir, tmp_path):
    registry = tmp_path / "registry.sqlite"
    run_registry.connect(registry).close()
    runs = tmp_path / "runs"
    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"output_dir={runs}", "name=watched",
                             "model.dtype=float32", "data.synthetic_size=48", f"training.max_steps={STEPS}",
                             "training.batch_size=4", "training.eval_every=8", "training.log_every=1",
                             "training.threads=1", "eval.tasks=[]"])
    config = tmp_path / "watched.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    index = RunIndex(registry, [runs])
    served = Served(index)
    env = {**os.environ, "TUNESCOPE_REGISTRY": str(registry),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src") + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tunescope.cli", "train", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        running = []
        while not running and proc.poll() is None and time.monotonic() < deadline:
            running = index.query(Query(filters={"status": "running"})).rows
            time.sleep(0.2)
        assert running, proc.stderr.read() if proc.poll() is not None else "no running run found"
        entry = running[0]
        assert entry.name == "watched" and entry.location.endswith(".watched.partial")
        offset, steps_seen, answers, total, final_url = 0, [], [], None, None
        while time.monotonic() < deadline:
            answer = json.loads(http_get(served.url, f"/api/runs/{entry.id}/progress?offset={offset}")[2])
            offset = answer["offset"]
            answers.append(answer["status"])
            for r in answer["records"]:
                if r["kind"] == "setup":
                    total = r["total_steps_planned"]
                elif r["kind"] == "train":
                    steps_seen.append(r["step"])
            if answer["status"] == "finished":
                final_url = answer["final_url"]
                break
            assert answer["status"] == "running", (answer,
                                                   proc.stderr.read() if proc.poll() is not None else "")
            time.sleep(0.3)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        assert total == STEPS and steps_seen == list(range(1, STEPS + 1))
        assert answers.count("running") >= 2  # seen while it trained, not only after
        assert final_url is not None
        status, _, page = http_get(served.url, final_url)  # registered as it finished
        assert status == 200 and "watched" in page and "status-finished" in page
    finally:
        if proc.poll() is None:
            proc.kill()
        served.stop()
