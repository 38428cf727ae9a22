"""Run folders and a registry for the dashboard tests: finished runs (from synthetic_run, one with its
report), and an unfinished run whose metrics.jsonl the test writes step by step as training would."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from synthetic_run import build_run
from tunescope.config.loading import load_config
from tunescope.recipes import run as pipeline
from tunescope.store import registry as run_registry

XSS_NAME = "<img src=x onerror=alert(1)>"


def finished_runs(root: Path, registry: Path, *, with_report: bool = True,
                  all_reports: bool = False) -> list[Path]:
    """Three registered runs under root/runs: `alpha` (with its report), `beta` (another model, lora) and
    `gamma` (dora, a grid cell of grid `g`); `all_reports` writes the reports of beta and gamma too."""
    runs = root / "runs"
    alpha = build_run(runs, "alpha", n_train=30, n_heldout=20, n_mc=40)
    beta = build_run(runs, "beta", n_train=30, n_heldout=20, n_mc=40, heldout_tuned_acc=0.15,
                     model="tiny-other", seed=3)
    gamma = build_run(runs / "g", "gamma-s1", n_train=30, n_heldout=20, n_mc=40, seed=5,
                      extra_overrides=("training.method=dora",))
    manifest = json.loads((gamma / "manifest.json").read_text())
    manifest["grid"] = {"id": "g", "folder": str(runs / "g"), "cell": "gamma", "seed": 1, "axes": {}}
    (gamma / "manifest.json").write_text(json.dumps(manifest))
    (runs / "g" / "grid.yaml").write_text(yaml.safe_dump({"runs": ["gamma-s1"]}))
    (runs / "g" / "grid.html").write_text("<!DOCTYPE html><html><head><title>grid g</title></head>"
                                          "<body><h1>Grid g report</h1></body></html>")
    for run in (alpha, beta, gamma) if all_reports else (alpha,) if with_report else ():
        pipeline.write_report(run, register=False)
    for run in (alpha, beta, gamma):
        run_registry.register_run(run, db=registry)
    return [alpha, beta, gamma]


def running_run(runs: Path, name: str, *, total_steps: int = 40, pid: int | None = None) -> Path:
    """`.<name>.partial` as a run writes it when training starts: config, manifest (status running, this
    host and `pid`, default this process) and the setup record."""
    folder = runs / f".{name}.partial"
    folder.mkdir(parents=True)
    cfg = load_config(None, [f"name={name}", "model.name=tiny-live", "data.source=synthetic-math",
                             f"training.max_steps={total_steps}"])
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    started = (datetime.now(UTC) - timedelta(seconds=95)).isoformat(timespec="seconds")
    manifest = {"name": name, "status": "running", "started": started,
                "model": {"name": "tiny-live"}, "data": {"source": "synthetic-math"},
                "process": {"host": socket.gethostname(), "pid": pid or os.getpid()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    append(folder, {"kind": "setup", "trainable_params": 1000, "total_params": 10000, "train_examples": 80,
                    "total_steps_planned": total_steps})
    return folder


def append(folder: Path, record: dict) -> None:
    with (folder / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def train_step(folder: Path, step: int, *, task: bool = False) -> None:
    """The records of one optimizer step (a validation loss every 5 steps, a task score every 10 with
    `task`)."""
    append(folder, {"kind": "train", "step": step, "epoch": step / 10, "loss": 2.0 / (1 + 0.1 * step),
                    "token_accuracy": 0.5, "lr": 1e-4, "grad_norm": 1.0, "tokens_supervised": 100 * step,
                    "tokens_nonpad": 200 * step, "tokens_total": 250 * step, "elapsed_s": 0.5 * step})
    if step % 5 == 0:
        append(folder, {"kind": "val", "step": step, "val_loss": 2.2 / (1 + 0.08 * step),
                        "val_token_accuracy": 0.5})
    if task and step % 10 == 0:
        append(folder, {"kind": "task_eval", "step": step, "task": "heldout",
                        "metric": "exact_match,strict-match", "value": min(0.9, 0.1 + 0.02 * step),
                        "stderr": 0.05, "n": 40, "seconds": 0.5})


class Served:
    """The dashboard on a free local port, in a thread of the test process."""

    def __init__(self, index, *, token: str | None = None, host: str = "127.0.0.1"):
        import threading

        import uvicorn

        from tunescope.serve.app import build_app
        from tunescope.serve.server import address_of, bind

        self.sock = bind(host, 0)
        self.url = address_of(self.sock, host).rstrip("/")
        self.app = build_app(index, token=token, local_only=host == "127.0.0.1")
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        import time

        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def http_get(base: str, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
    """GET `path` exactly as written (no normalisation of `..` or percent escapes): status, headers, body."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode("utf-8", "replace"))
    finally:
        conn.close()
