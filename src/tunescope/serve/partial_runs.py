"""Unfinished run folders (`<runs>/.<name>.partial`, also inside grid folders): what they are and whether
their run is still going.

A run is written under `.<name>.partial` and renamed when it completes, so these folders are the runs
that are training (or evaluating), that failed, or whose process was interrupted. The manifest says
`running`, `failed` or `interrupted`; a `running` manifest whose writer is gone (its process no longer
exists on this host, or, for a run on another host, nothing in the folder changed for
`STALE_AFTER_S`) is shown as interrupted.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tunescope.core.errors import UserError
from tunescope.store import run_folder as rr
from tunescope.store.grid_folder import GRID_FILE

SCAN_EVERY_S = 1.0
STALE_AFTER_S = 30 * 60


@dataclass(frozen=True)
class PartialRun:
    path: Path
    name: str
    status: str  # running | failed | interrupted
    model: str | None
    method: str | None
    dataset: str | None
    grid: str | None
    started: str | None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def newest_change(folder: Path) -> float:
    times = []
    for name in (rr.MANIFEST, rr.METRICS):
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def live_status(folder: Path, manifest: rr.Manifest) -> str:
    """running, failed or interrupted, from the manifest and whether its writer still exists."""
    status = manifest.status or "running"
    if status in ("failed", "interrupted"):
        return status
    process = manifest.as_dict().get("process")
    if (isinstance(process, dict) and process.get("host") == socket.gethostname()
            and isinstance(process.get("pid"), int)):
        return "running" if process_alive(process["pid"]) else "interrupted"
    return "running" if time.time() - newest_change(folder) < STALE_AFTER_S else "interrupted"


def describe(folder: Path) -> PartialRun:
    """What the folder's manifest and config say (a damaged or missing file leaves fields empty)."""
    name = folder.name.removeprefix(".").removesuffix(".partial")
    try:
        manifest = rr.read_manifest(folder)
    except (UserError, OSError):
        return PartialRun(folder, name, "failed", None, None, None, None, None)
    model = dataset = method = None
    try:
        cfg = rr.read_config(folder)
        model, dataset, method = cfg.model.name, cfg.data.source, cfg.training.method
    except (UserError, OSError):
        model = manifest.model.name
    grid = manifest.as_dict().get("grid")
    return PartialRun(folder, manifest.name or name, live_status(folder, manifest),
                      model or manifest.model.name, method, dataset,
                      grid.get("id") if isinstance(grid, dict) else None, manifest.started)


def partial_folders(root: Path) -> list[Path]:
    """`.<name>.partial` folders in `root` and in the grid folders directly inside it."""
    found: list[Path] = []
    try:
        children = list(root.iterdir())
    except OSError:
        return found
    for child in children:
        if child.name.startswith(".") and child.name.endswith(".partial") and child.is_dir():
            found.append(child)
        elif (child / GRID_FILE).is_file():
            try:
                found.extend(c for c in child.iterdir()
                             if c.name.startswith(".") and c.name.endswith(".partial") and c.is_dir())
            except OSError:
                pass
    return found


class PartialScanner:
    """Scans the roots at most once every `SCAN_EVERY_S`; a folder is described again only when its
    manifest changed (the status, which depends on its process, every scan)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._roots: list[Path] = []
        self._found: list[PartialRun] = []
        self._described: dict[Path, tuple[float, PartialRun]] = {}

    def scan(self, roots: list[Path], fresh: bool = False) -> list[PartialRun]:
        with self._lock:
            if not fresh and roots == self._roots and time.monotonic() - self._at < SCAN_EVERY_S:
                return self._found
            folders = {f.resolve() for root in roots for f in partial_folders(root)}
            found = []
            for folder in sorted(folders):
                try:
                    mtime = (folder / rr.MANIFEST).stat().st_mtime
                except OSError:
                    mtime = -1.0
                cached = self._described.get(folder)
                if cached is None or cached[0] != mtime:
                    cached = (mtime, describe(folder))
                    self._described[folder] = cached
                run = cached[1]
                if run.status != "failed" and mtime >= 0:
                    try:
                        status = live_status(folder, rr.read_manifest(folder))
                    except (UserError, OSError):
                        status = "failed"
                    run = PartialRun(**{**run.__dict__, "status": status})
                found.append(run)
            self._described = {k: v for k, v in self._described.items() if k in folders}
            self._found, self._roots, self._at = found, list(roots), time.monotonic()
            return found
