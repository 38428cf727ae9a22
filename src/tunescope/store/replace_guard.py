"""What `--overwrite` may remove, and where an export may go.

`--overwrite` replaces a folder tunescope wrote, never anything else: a run folder (its manifest or
config is there), an export (`tunescope_export.json`), or an empty folder. A folder of someone's own
files named by mistake is refused with one line. An export is never written over, into or around the
run it exports: replacing its output folder would delete the run.
"""

from __future__ import annotations

from pathlib import Path

from tunescope.core.errors import UserError
from tunescope.store.layout import CONFIG, EXPORT_DIR, MANIFEST

RUN_MARKERS = (MANIFEST, CONFIG)
EXPORT_MARKER = "tunescope_export.json"


def _is_empty_dir(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def check_replaceable_run(folder: Path) -> None:
    """Refuse to let `--overwrite` remove `folder` unless it is a run folder (or empty)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise UserError("is not a run folder (a file or a link); --overwrite replaces only a run "
                        "tunescope wrote",
                        where=str(folder))
    if _is_empty_dir(folder) or any((folder / m).is_file() for m in RUN_MARKERS):
        return
    raise UserError("is not a tunescope run (no manifest.json or config.yaml); --overwrite never removes "
                    "other folders: move it away or pick another name (--set name=...)", where=str(folder))


def check_export_target(run_dir: Path, out: Path, overwrite: bool) -> None:
    """Refuse an export folder that is the run, holds the run, or (when it would be replaced) is not an
    export."""
    run_real = Path(run_dir).resolve()
    out_real = Path(out).resolve()
    if out_real == run_real or run_real.is_relative_to(out_real):
        raise UserError(f"the output folder contains the run it exports ({run_dir}); pick a folder "
                        "outside it", where="--output")
    if out_real.is_relative_to(run_real) and not out_real.is_relative_to(run_real / EXPORT_DIR):
        raise UserError(f"the output folder is inside the run it exports ({run_dir}); use "
                        f"{run_dir}/export/... or a folder outside the run", where="--output")
    if overwrite and out.exists() and out.is_dir() and not out.is_symlink():
        if not (_is_empty_dir(out) or (out / EXPORT_MARKER).is_file()):
            raise UserError(f"is not a tunescope export (no {EXPORT_MARKER}); --overwrite never removes "
                            "other folders: pick another --output", where=str(out))
