"""`tunescope grid`: expand the grid, run what is not finished, register the runs, write the grid report.

The grid folder's layout (grid file, status records, run names) is `store.grid_folder`'s.

Re-running a grid skips the runs that are complete, resumes interrupted ones from their checkpoint and
retries failed ones. The runs go in two waves: first one run per base model (each evaluates its base
model once, into the cache), then all the others, which copy that evaluation instead of repeating it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunescope.core.errors import UserError, check_writable_dir
from tunescope.grid.executors import Job, run_on_ray, run_sequential, start_ray
from tunescope.grid.spec import Grid, Run
from tunescope.store.grid_folder import read_status, run_complete, write_grid_file
from tunescope.store.lock import run_lock


def _complete(run: Run) -> bool:
    """A damaged run folder is not complete: the run goes again (resuming its checkpoint if any)."""
    try:
        return run_complete(Path(run.config.output_dir) / run.name)
    except UserError:
        return False


def _base_group(run: Run) -> str:
    """Runs that can share one base evaluation (the cache decides for sure, by the items too)."""
    c = run.config
    return json.dumps([c.model.model_dump(mode="json"), c.eval.model_dump(mode="json"), c.device,
                       c.prompt.template, c.prompt.use_chat_template], sort_keys=True, default=str)


def _job(grid: Grid, run: Run) -> Job:
    extra = {"grid": {"id": grid.name, "folder": str(grid.folder), "cell": run.cell, "seed": run.seed,
                      "axes": run.axes}}
    return run.name, run.config.model_dump(mode="json"), extra


def run_grid(grid: Grid, *, use_ray: bool = False, ray_address: str | None = None,
             ray_num_cpus: int | None = None, progress=None, report: bool = True) -> dict:
    """Run every unfinished run of the grid; returns {"statuses": {run: status}, "paths": report files}."""
    folder = grid.folder
    check_writable_dir(folder, where="output_dir")
    if use_ray or ray_address:
        # before anything is written: a dead address is the user's to fix
        start_ray(ray_address, ray_num_cpus)
    # One grid process per grid folder (each cell is locked too, against a `tunescope run` of the same name).
    with run_lock(folder, on_stale=progress.message if progress is not None else None):
        return _run_grid_locked(grid, folder, use_ray=use_ray or bool(ray_address), progress=progress,
                                report=report)


def _run_grid_locked(grid: Grid, folder: Path, *, use_ray: bool, progress, report: bool) -> dict:
    from tunescope.recipes import run as pipeline

    folder.mkdir(parents=True, exist_ok=True)
    write_grid_file(folder, grid.describe())

    statuses: dict[str, dict] = {}
    todo: list[Run] = []
    for run in grid.runs:
        if _complete(run):
            statuses[run.name] = {**(read_status(folder, run.name) or {}), "run": run.name,
                                  "status": "complete", "skipped": True}
        else:
            todo.append(run)
    leaders: dict[str, Run] = {}
    for run in todo:
        leaders.setdefault(_base_group(run), run)
    done_groups = {_base_group(r) for r in grid.runs if _complete(r)}
    first = [r for g, r in leaders.items() if g not in done_groups]
    rest = [r for r in todo if r not in first]

    def on_done(status: dict) -> None:
        statuses[status["run"]] = status
        if status.get("status") == "complete":
            pipeline.register_or_warn(folder / status["run"], progress)
        if progress is not None:
            progress.message(f"{status['run']}: {status.get('status')}"
                             + (f" — {status['error']}" if status.get("error") else ""))

    for wave in (first, rest):
        jobs = [_job(grid, r) for r in wave]
        if not jobs:
            continue
        if use_ray:
            run_on_ray(jobs, folder, on_done, grid.file.max_retries)
        else:
            run_sequential(jobs, folder, on_done, progress)
    paths = write_grid_report(folder) if report else {}
    return {"statuses": {r.name: statuses.get(r.name, {}) for r in grid.runs}, "paths": paths}


def write_grid_report(folder: Path) -> dict[str, Path]:
    from tunescope.grid.aggregate import analyse_grid
    from tunescope.report.grid import render_grid

    return render_grid(analyse_grid(Path(folder)), Path(folder))
