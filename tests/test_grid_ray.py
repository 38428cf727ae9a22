"""The grid on a local Ray cluster of 2 CPUs: a 2 × 2 × 2-seed grid of tiny models, two runs at a time,
with one worker SIGKILLed mid-run. Ray retries that run (the grid's max_retries), the retry resumes the
run's partial folder, and the grid finishes with every run complete and the kill on record."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from grid_fixtures import second_tiny_model, write_grid
from tunescope.core.errors import UserError
from tunescope.grid.scheduler import run_grid
from tunescope.grid.spec import load_grid
from tunescope.store.grid_folder import read_status

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tunescope[ray]')")


@pytest.fixture
def local_ray():
    yield
    ray.shutdown()


def _kill_one_worker_mid_run(folder, killed: dict, stop: threading.Event) -> None:
    """SIGKILL the worker of the first run seen with a training checkpoint and not yet finished."""
    while not stop.is_set() and not killed:
        for partial in folder.glob(".*.partial"):
            if not any((partial / "checkpoints").glob("step-*")):
                continue
            run = partial.name[1:].removesuffix(".partial")
            status = read_status(folder, run) or {}
            if status.get("status") == "running" and status.get("attempt") == 1:
                try:
                    os.kill(status["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed[run] = status["pid"]
                return
        time.sleep(0.05)


def _run_on_ray_killing_one_worker(g) -> tuple[dict, dict]:
    """Run the grid on a local 2-CPU Ray cluster while one worker is SIGKILLed mid-run;
    (result, {run: pid})."""
    killed: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_one_worker_mid_run, args=(g.folder, killed, stop), daemon=True)
    watcher.start()
    try:
        result = run_grid(g, use_ray=True, ray_num_cpus=2)
    finally:
        stop.set()
        watcher.join()
    return result, killed


def test_grid_on_local_ray_survives_a_killed_worker(tmp_path, tiny_model_dir, tiny_tokenizer, local_ray):
    model_b = second_tiny_model(tmp_path, tiny_tokenizer)
    path = write_grid(tmp_path, {"model.name": [str(tiny_model_dir), str(model_b)],
                                 "training.method": ["lora", "dora"]}, seeds=[1, 2], max_retries=1,
                      base_extra={"training.checkpoint_every": 1})
    g = load_grid(path)
    result, killed = _run_on_ray_killing_one_worker(g)
    statuses = result["statuses"]
    assert killed, "no run was caught mid-run"
    (victim, pid), = killed.items()
    assert all(s["status"] == "complete" for s in statuses.values()), statuses
    assert statuses[victim]["attempt"] == 2 and statuses[victim]["pid"] != pid
    hosts_pids = {(s["host"], s["pid"]) for s in statuses.values()}
    assert len(hosts_pids) >= 2  # the runs were spread over more than one worker
    data = json.loads((g.folder / "grid.json").read_text())
    assert len([r for r in data["runs"] if r["status"] == "complete"]) == 8
    assert sum(bool(r["base_eval_reused"]) for r in data["runs"]) == 6
    assert (g.folder / "grid.html").is_file()


def test_a_ray_address_that_does_not_answer_is_a_user_error(tmp_path, tiny_model_dir):
    path = write_grid(tmp_path, {"training.method": ["lora"]}, base_extra={"model.name": str(tiny_model_dir)})
    g = load_grid(path)
    with pytest.raises(UserError, match="no Ray cluster answers at 127.0.0.1:9") as err:
        run_grid(g, ray_address="127.0.0.1:9")
    assert err.value.where == "--ray-address"
    assert not g.folder.exists()


def test_a_run_whose_retries_are_spent_is_recorded_failed_and_the_others_finish(tmp_path, tiny_model_dir,
                                                                                local_ray):
    path = write_grid(tmp_path, {"training.method": ["lora"]}, seeds=[1, 2], max_retries=0,
                      base_extra={"model.name": str(tiny_model_dir), "training.checkpoint_every": 1})
    g = load_grid(path)
    result, killed = _run_on_ray_killing_one_worker(g)
    assert killed, "no run was caught mid-run"
    (victim,) = killed
    statuses = result["statuses"]
    assert statuses[victim]["status"] == "failed"
    assert "died 1 time(s)" in statuses[victim]["error"]
    assert [s["status"] for name, s in statuses.items() if name != victim] == ["complete"]
    data = json.loads((g.folder / "grid.json").read_text())
    failed = [r for r in data["runs"] if r["status"] == "failed"]
    assert [r["run"] for r in failed] == [victim] and "died" in failed[0]["error"]
    assert (g.folder / f".{victim}.partial").is_dir()  # kept: running the grid again resumes it
    assert (g.folder / "grid.html").is_file()
