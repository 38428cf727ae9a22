"""A run's progress while it trains: the metrics records written since the browser last asked.

The browser sends the byte offset it has read `metrics.jsonl` up to; the answer holds the complete lines
after it (a line still being written waits for the next poll), the new offset and the run's status.
A resumed run rewrites the file shorter; then the answer starts over from the top (`reset`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.serve.partial_runs import live_status
from tunescope.store import run_folder as rr

MAX_READ_BYTES = 4 << 20
# The fields the progress panel draws, by record kind.
FIELDS = {
    "setup": ("total_steps_planned", "train_examples"),
    "train": ("step", "epoch", "loss", "token_accuracy", "elapsed_s"),
    "val": ("step", "val_loss"),
    "task_eval": ("step", "task", "metric", "value", "stderr", "n"),
    "summary": ("steps", "total_steps_planned"),
}


def read_records_after(path: Path, offset: int) -> tuple[list[dict[str, Any]], int, bool]:
    """(records, new offset, reset): the complete lines of `path` after byte `offset`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0, offset > 0
    reset = offset > size or offset < 0
    start = 0 if reset else offset
    with path.open("rb") as f:
        f.seek(start)
        chunk = f.read(min(size - start, MAX_READ_BYTES))
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], start, reset
    records = []
    for line in chunk[: end + 1].splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a damaged line: the report names it; the live view skips it
        if isinstance(rec, dict) and rec.get("kind") in FIELDS:
            records.append({"kind": rec["kind"], **{k: rec.get(k) for k in FIELDS[rec["kind"]]}})
    return records, start + end + 1, reset


def final_folder(partial: Path) -> Path:
    """Where a `.<name>.partial` folder goes when its run completes."""
    return partial.parent / partial.name.removeprefix(".").removesuffix(".partial")


def progress(folder: Path, offset: int) -> dict[str, Any]:
    """What the progress panel needs: status, start time, the server's clock and the new records.

    Status is `running`, `failed`, `interrupted`, `finished` (the folder was renamed into place: `final`
    is the finished run's folder) or `gone` (the folder no longer exists)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    if not folder.is_dir():
        final = final_folder(folder)
        if final != folder and (final / rr.MANIFEST).is_file():
            return {"status": "finished", "final": str(final.resolve()), "records": [], "offset": offset,
                    "reset": False, "now": now, "started": None}
        return {"status": "gone", "records": [], "offset": offset, "reset": False, "now": now,
                "started": None}
    try:
        manifest = rr.read_manifest(folder)
        status = live_status(folder, manifest) if folder.name.endswith(".partial") else "finished"
        started = manifest.started
    except (UserError, OSError):
        status, started = "running", None  # the manifest is being rewritten; the next poll reads it
    records, new_offset, reset = read_records_after(folder / rr.METRICS, offset)
    return {"status": status, "records": records, "offset": new_offset, "reset": reset, "now": now,
            "started": started}
