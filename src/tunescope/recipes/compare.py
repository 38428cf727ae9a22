"""`tunescope compare`: which evaluations to compare (run folders, evaluation folders, the finished
runs of a grid), with which test settings, written where. The comparison itself is `analysis.compare`."""

from __future__ import annotations

from pathlib import Path

from tunescope.config.loading import load_config, only_report_keys
from tunescope.core.errors import UserError, check_writable_dir
from tunescope.store import run_folder as rr
from tunescope.store.grid_folder import is_grid_folder, read_grid_file, run_complete, run_names


def compare(run_dirs: list[str | Path], *, baseline: str | None = None, output: str | Path | None = None,
            overrides: list[str] | None = None) -> dict[str, Path]:
    """One report comparing the evaluations of several runs (base and tuned columns) with paired tests at
    `report.alpha` with `report.bootstrap_resamples` (their defaults, or `overrides` such as
    `report.alpha=0.01`)."""
    from tunescope.analysis.compare import compare_runs
    from tunescope.report.render import render_compare

    if not run_dirs:
        raise UserError("name at least one run directory", where="RUNS")
    run_dirs = _expand_grids(run_dirs)
    seen: dict[Path, str] = {}
    for d in run_dirs:
        resolved = Path(d).resolve()
        if resolved in seen:
            # The same evaluation twice would be tested against itself and inflate the Holm correction.
            raise UserError(f"named twice (also as '{seen[resolved]}'); name each run once", where=str(d))
        seen[resolved] = str(d)
    only_report_keys(overrides or [], "in a comparison")
    if output is not None:  # before the comparison runs: a file in its place is the user's to move
        check_writable_dir(output, where="--output")
    settings = load_config(None, overrides or []).report
    runs = [rr.open_run_or_evaluation(d) for d in run_dirs]
    data = compare_runs(runs, baseline, alpha=settings.alpha, n_boot=settings.bootstrap_resamples)
    if output is None:
        first = Path(run_dirs[0])
        slug = "-vs-".join(r.name for r in runs)[:80].strip("-.") or "runs"
        output = first.parent / f"compare-{slug}"
    return render_compare(data, Path(output))


def _expand_grids(paths: list[str | Path]) -> list[Path]:
    """A grid folder (it holds grid.yaml) stands for its finished runs, in the grid's order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not is_grid_folder(p):
            out.append(p)
            continue
        done = [p / n for n in run_names(read_grid_file(p)) if run_complete(p / n)]
        if not done:
            raise UserError("the grid has no finished run yet", where=str(p))
        out.extend(done)
    return out
