"""`tunescope serve` at scale: a registry of 10,000 runs, and 20 runs training at once.

    .venv/bin/python benchmarks/serve_scale.py [--runs 10000] [--live 20] [--live-seconds 30]

Builds, in a temporary folder, a registry of `--runs` registered runs (50 grids, 5 models, 3 methods, two
tasks with base and tuned scores, the resolved config and the headline comparison stored as a run
registers them) and `--live` unfinished run folders whose process (this one) is alive. Starts
`tunescope serve --port 0` as a user would, in its own process, and measures over HTTP on the loopback:

1. startup: from the process start to the address printed, and to the first runs page served;
2. the runs page (server time, as the client sees it on the loopback): the first request (which loads the
   registry), then each query `--repeats` times: the default page, each filter, a name search, sorts on a
   text and a score column, the last page; then a run registers: how long until it is listed, and the
   pages' time meanwhile (the table is read again in the background);
3. live updates: one writer thread per live run appends a training record every `--step-seconds` (and a
   validation record every 5 steps), as the training loop does; one poller per run asks for the records
   after its offset as the run page's script does (one second after each answer). For every record, the
   delay from its write to the poller's answer holding it. Meanwhile the runs page is still timed.

Prints the machine (CPU, cores, load average) and every figure; exits non-zero if the runs page's median
exceeds 300 ms or a live update took over 2 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tunescope.config.loading import load_config
from tunescope.store import registry as run_registry

MODELS = ("smollm2-135m-instruct", "smollm2-360m-instruct", "qwen2.5-0.5b-instruct", "gemma-3-270m",
          "tiny-llama")
METHODS = ("lora", "dora", "full")
DATASETS = ("synthetic-math", "gsm8k", "data/own.jsonl")


def build_registry(db: Path, runs_root: Path, n: int, seed: int = 0) -> None:
    """n registered runs in one transaction (the rows `register_run` writes; the folders are not created)."""
    rng = random.Random(seed)
    conn = run_registry.connect(db)
    config = json.dumps(load_config(None, []).model_dump(mode="json"))
    runs, scores = [], []
    for i in range(n):
        grid = f"grid-{i % 50:02d}"
        path = str(runs_root / grid / f"cell-{i:05d}-s{i % 3}")
        base_acc, tuned_acc = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.7)
        headline = {"task": "heldout", "metric": "exact_match,strict-match",
                    "label": "exact match (strict-match)", "is_target": True, "base": base_acc,
                    "base_stderr": 0.05, "tuned": tuned_acc, "tuned_stderr": 0.05, "n": 100,
                    "delta_points": (tuned_acc - base_acc) * 100, "n_paired": 100, "test": "McNemar exact",
                    "p_value": rng.random() / 10, "p_holm": rng.random(), "significant": rng.random() < 0.4,
                    "ci_low": None, "ci_high": None}
        row = {"path": path, "name": f"cell-{i:05d}-s{i % 3}", "model": MODELS[i % 5],
               "dataset": DATASETS[i % 3], "method": METHODS[i % 3], "status": "complete",
               "started": "2026-11-01T00:00:00+00:00",
               "finished": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00",
               "registered_at": "2026-12-01T00:00:00+00:00", "wall_s": 600.0, "steps": 100,
               "config_json": config, "manifest_json": "{}", "grid": grid,
               "headline_json": json.dumps(headline)}
        runs.append(row)
        for label, acc in (("base", base_acc), ("tuned", tuned_acc)):
            scores += [(path, label, "heldout", "exact_match,strict-match", acc, 0.05, 100),
                       (path, label, "heldout", "exact_match,flexible-extract", acc + 0.05, 0.05, 100),
                       (path, label, "hellaswag", "acc,none", 0.4, 0.03, 200),
                       (path, label, "hellaswag", "acc_norm,none", 0.45, 0.03, 200)]
    columns = list(runs[0])
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                     [[r[c] for c in columns] for r in runs])
    conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", scores)
    conn.execute("COMMIT")
    conn.close()


def live_folder(runs_root: Path, name: str, total: int) -> Path:
    folder = runs_root / f".{name}.partial"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\ntraining:\n  max_steps: {total}\n")
    (folder / "manifest.json").write_text(json.dumps({
        "name": name, "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "model": {"name": "smollm2-135m-instruct"}, "process": {"host": socket.gethostname(),
                                                                "pid": os.getpid()}}))
    with (folder / "metrics.jsonl").open("w") as f:
        f.write(json.dumps({"kind": "setup", "total_steps_planned": total}) + "\n")
    return folder


def get(port: int, path: str) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return response.status, body, elapsed


QUERIES = {
    "default page (newest first, 50 rows)": "/",
    "filter model": "/?model=gemma-3-270m",
    "filter method + grid": "/?method=dora&grid=grid-07",
    "filter task + status": "/?task=hellaswag&status=finished",
    "search by name": "/?q=cell-0999",
    "sort by name": "/?sort=name&dir=asc",
    "sort by Δ": "/?sort=delta&dir=desc",
    "sort by p": "/?sort=p&dir=asc",
    "last page": "/?page=200",
}


def time_queries(port: int, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for label, path in QUERIES.items():
        times = []
        for _ in range(repeats):
            status, _, elapsed = get(port, path)
            assert status == 200, (path, status)
            times.append(elapsed)
        out[label] = times
    return out


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def after_change(port: int, db: Path, runs_root: Path) -> None:
    """A run registers while the dashboard serves: the next pages' time, and how long until it is listed."""
    run_registry.insert_record({"path": str(runs_root / "late-run"), "name": "late-run", "status": "complete",
                                "scores": []}, db)
    changed = time.perf_counter()
    times = []
    while True:
        status, body, elapsed = get(port, "/?q=late-run")
        times.append(elapsed)
        if b'data-run="' in body:
            break
        time.sleep(0.05)
    print(f"a run registered while serving: listed after {time.perf_counter() - changed:.2f} s; the "
          f"{len(times)} runs pages asked for meanwhile took median {ms(statistics.median(times))}, max "
          f"{ms(max(times))}")


def live_phase(port: int, folders: list[Path], seconds: float, step_s: float) -> tuple[list[float], dict]:
    """Writers append records; pollers read them as live.js does. Returns every record's delay."""
    from tunescope.serve.run_index import run_id

    written: dict[tuple[int, int], float] = {}
    delays: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int, folder: Path) -> None:
        step = 0
        while not stop.wait(step_s * random.uniform(0.8, 1.2)):
            step += 1
            with lock:
                written[(k, step)] = time.monotonic()
            with (folder / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"kind": "train", "step": step, "loss": 1.0 / step,
                                    "elapsed_s": step * step_s}) + "\n")
                if step % 5 == 0:
                    f.write(json.dumps({"kind": "val", "step": step, "val_loss": 1.1 / step}) + "\n")

    def poller(k: int, folder: Path) -> None:
        offset, rid = 0, run_id(folder.resolve())
        while not stop.is_set():
            status, body, _ = get(port, f"/api/runs/{rid}/progress?offset={offset}")
            now = time.monotonic()
            answer = json.loads(body)
            offset = answer["offset"]
            with lock:
                for r in answer["records"]:
                    if r["kind"] == "train" and (k, r["step"]) in written:
                        delays.append(now - written[(k, r["step"])])
            time.sleep(1.0)

    threads = [threading.Thread(target=f, args=(k, d), daemon=True)
               for k, d in enumerate(folders) for f in (writer, poller)]
    for t in threads:
        t.start()
    pages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pages.append(get(port, "/")[2])
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    return delays, {"runs page during live phase": pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=20)
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="serve-scale-") as tmp:
        root = Path(tmp)
        runs_root = root / "runs"
        runs_root.mkdir()
        t0 = time.perf_counter()
        build_registry(root / "registry.sqlite", runs_root, args.runs)
        print(f"registry: {args.runs} runs, {args.runs * 8} scores, "
              f"{(root / 'registry.sqlite').stat().st_size / 1e6:.1f} MB (built in "
              f"{time.perf_counter() - t0:.1f} s)")
        folders = [live_folder(runs_root, f"live-{k:02d}", total=10_000) for k in range(args.live)]
        env = {**os.environ, "TUNESCOPE_REGISTRY": str(root / "registry.sqlite")}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tunescope.cli", "serve", "--port", "0", "--runs-dir",
                                 str(runs_root)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stdout.readline()
            printed = time.perf_counter() - started
            port = int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
            status, _, first = get(port, "/")
            print(f"startup: address printed after {printed:.2f} s; first runs page (loads the registry) "
                  f"{ms(first)}, {printed + first:.2f} s after the start")
            results = time_queries(port, args.repeats)
            worst_median = 0.0
            for label, times in results.items():
                worst_median = max(worst_median, statistics.median(times))
                print(f"runs page, {label}: median {ms(statistics.median(times))}, max {ms(max(times))} "
                      f"({len(times)} requests)")
            after_change(port, root / "registry.sqlite", runs_root)
            delays, during = live_phase(port, folders, args.live_seconds, args.step_seconds)
            pages = during["runs page during live phase"]
            print(f"live: {args.live} runs training, a record every ~{args.step_seconds} s each, "
                  f"{len(delays)} records seen; write → browser delay median {statistics.median(delays):.2f} "
                  f"s, p95 {sorted(delays)[int(0.95 * len(delays))]:.2f} s, max {max(delays):.2f} s")
            print(f"runs page while they train: median {ms(statistics.median(pages))}, max {ms(max(pages))} "
                  f"({len(pages)} requests)")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ok = worst_median < 0.3 and max(delays) < 2.0
    print("within bounds (runs page median < 300 ms, every live update < 2 s)" if ok else "OUT OF BOUNDS")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
