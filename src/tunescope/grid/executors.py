"""Running the runs of a grid: one after another in this process, or as Ray tasks on a cluster.

Either way a run is executed by `run_one`, which works only through the grid folder (a path every Ray
worker shares): it resumes the run's `.partial` folder if an earlier attempt left one, writes its
status to `_cells/<run>.json` (running with its host and process id, then complete or failed with the
error), and returns that status. An exception inside a run fails that run only.

On Ray each run is a task asking for the resources its config's device needs (one GPU, or
`training.threads` CPUs, default one). A worker that dies mid-run (killed, out of memory, node lost) is
Ray's to retry, up to the grid's `max_retries`; the retry resumes from the run's latest checkpoint. A
run whose retries are spent is recorded as failed with Ray's error, so no run is lost silently.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tunescope.core.errors import UserError, one_line
from tunescope.store.fileio import now_iso
from tunescope.store.grid_folder import read_status, write_status
from tunescope.store.lock import run_lock


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {one_line(e, limit=500)}"


def run_one(config: dict, folder: str, manifest_extra: dict, progress=None) -> dict:
    """Run (or resume) one grid run; never raises for a failure of the run itself."""
    from tunescope.config.run_config import RunConfig

    cfg = RunConfig.model_validate(config)
    folder_path = Path(folder)
    try:
        # The cell's status is written only by the process that holds its folder.
        with run_lock(folder_path / cfg.name, on_stale=progress.message if progress is not None else None):
            return _run_one_locked(cfg, folder_path, manifest_extra, progress)
    except UserError as e:  # another process writes this cell: its status file is left to it
        return {"run": cfg.name, "status": "failed", "error": one_line(e), "finished": now_iso()}


def _run_one_locked(cfg, folder_path: Path, manifest_extra: dict, progress) -> dict:
    from tunescope.grid.base_cache import GridBaseEvalCache
    from tunescope.recipes import run as pipeline

    before = read_status(folder_path, cfg.name) or {}
    status = {"run": cfg.name, "status": "running", "host": socket.gethostname(), "pid": os.getpid(),
              "attempt": int(before.get("attempt", 0)) + 1, "started": now_iso()}
    write_status(folder_path, cfg.name, status)
    partial = folder_path / f".{cfg.name}.partial"
    t0 = time.perf_counter()
    try:
        pipeline.run(cfg, progress=progress, resume=partial.is_dir(),
                     base_eval_cache=GridBaseEvalCache(folder_path), manifest_extra=manifest_extra,
                     register=False)
        status.update(status="complete")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the cell says so, and re-running the grid resumes it
        status.update(status="interrupted", finished=now_iso(), wall_s=round(time.perf_counter() - t0, 2))
        write_status(folder_path, cfg.name, status)
        raise
    except Exception as e:  # one run's failure is recorded and the grid goes on
        status.update(status="failed", error=_one_line(e), traceback=traceback.format_exc()[-4000:])
    status.update(finished=now_iso(), wall_s=round(time.perf_counter() - t0, 2))
    write_status(folder_path, cfg.name, status)
    return status


Job = tuple[str, dict, dict]  # (run name, resolved config, manifest fields)
Done = Callable[[dict], None]


def run_sequential(jobs: list[Job], folder: Path, on_done: Done, progress=None) -> None:
    for _, config, extra in jobs:
        on_done(run_one(config, str(folder), extra, progress))


def check_ray_address(address: str) -> None:
    """A Ray address that does not answer is the user's to fix: say so at once instead of waiting on Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"'{address}' is not HOST:PORT", where="--ray-address")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"no Ray cluster answers at {address} ({e.strerror or e})",
                        where="--ray-address") from None


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed: pip install 'tunescope[ray]'", where="--ray") from None
    where = "--ray-address"
    if address is None and os.environ.get("RAY_ADDRESS", "").strip():
        # Ray itself would wait on an address from the environment for ever: check it like the option.
        address, where = os.environ["RAY_ADDRESS"].strip(), "RAY_ADDRESS"
    if address is not None and address != "auto":
        try:
            check_ray_address(address)
        except UserError as e:
            raise UserError(str(e).removeprefix(f"{e.where}: "), where=where) from None
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        hint = " (start one with `ray start --head`, or leave out --ray-address for a local one)" \
            if address == "auto" else ""
        raise UserError(f"cannot join the Ray cluster at {address or 'a new local cluster'}{hint}: "
                        f"{one_line(e)}",
                        where=where) from None


def _resources(config: dict, cluster_gpus: float) -> dict:
    device = config.get("device", "auto")
    if device == "cuda" or (device == "auto" and cluster_gpus > 0):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": (config.get("training") or {}).get("threads") or 1}


def run_on_ray(jobs: list[Job], folder: Path, on_done: Done, max_retries: int) -> None:
    """Every job as a Ray task; waits for all of them. A task whose worker died `max_retries + 1`
    times comes back as Ray's error and is recorded as failed."""
    import ray

    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(run_one)
    gpus = ray.cluster_resources().get("GPU", 0)
    pending = {task.options(**_resources(config, gpus)).remote(config, str(folder), extra): name
               for name, config, extra in jobs}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        name = pending.pop(ref)
        try:
            status = ray.get(ref)
        except ray.exceptions.RayError as e:
            status = {**(read_status(folder, name) or {"run": name}), "status": "failed",
                      "error": f"the worker running it died {max_retries + 1} time(s): {_one_line(e)}",
                      "finished": now_iso()}
            write_status(folder, name, status)
        on_done(status)
