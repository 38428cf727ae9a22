"""One writer per run folder: an advisory lock beside the folder, held while a command writes it.

A run is written under `<output_dir>/.<name>.partial/` and renamed to `<output_dir>/<name>/`, so a lock
inside either folder would not cover the other name (nor the moment of the rename). The lock is the
file `<output_dir>/.<name>.lock`, beside both names: `run`, `train`, `report`, `export` and each grid
cell hold it for their whole life, and a grid holds `.<grid name>.lock` for its folder.

The lock is `fcntl.flock` on that file, which the kernel releases when its holder dies, so a process
killed with SIGKILL never blocks the next writer. The file records the holder (PID, host, command,
time); a writer that finds a record but takes the lock knows the previous holder ended without
cleaning up, and says that it takes the stale lock over. A second writer while the holder lives gets
one line naming it (a `UserError`, exit code 2). The lock is re-entrant within a process: `run` holds
it while it writes its report through the same code path as `tunescope report`.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tunescope.core.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, one writer is then the user's to keep
    fcntl = None

LOCK_SUFFIX = ".lock"
PARTIAL_SUFFIX = ".partial"

# Lock files held by this process (path -> (file descriptor, depth)).
_HELD: dict[str, list] = {}


def lock_path(folder: str | Path) -> Path:
    """The lock of a run folder given by either of its names (`<name>` or `.<name>.partial`)."""
    folder = Path(folder)
    name = folder.name
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
        name = name[1:-len(PARTIAL_SUFFIX)]
    return folder.parent / f".{name}{LOCK_SUFFIX}"


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:3])})


def _describe(record: dict) -> str:
    if not record:  # the holder has the lock but has not written its details yet (a moment after it started)
        return "a process that has just started (no PID recorded yet)"
    pid = record.get("pid", "?")
    host = record.get("host", "?")
    command = record.get("command")
    return f"PID {pid} on host {host}" + (f" ({command})" if command else "")


def _read_record(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096).decode("utf-8", "replace")
        record = json.loads(data) if data.strip() else {}
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _open_locked(path: Path, what: str) -> tuple[int, dict]:
    """Open and lock `path`; (fd, the stale holder's record or {}). Refuses when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # an OSError here is the caller's to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise UserError(f"another tunescope process is writing it: {_describe(holder)}; wait for it to "
                            f"finish or stop it (lock file {path.name})",
                            where=str(path.parent / what)) from None
        except OSError as e:  # a file system without locks (some network mounts)
            os.close(fd)
            raise UserError(f"cannot lock ({e.strerror or e})", where=str(path)) from None
        # The previous holder may have removed the file between our open and our lock: lock the file
        # that is at the path now, or another writer could lock a new one beside ours.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read_record(fd)
        os.close(fd)


@contextmanager
def run_lock(folder: str | Path, *, on_stale: Callable[[str], None] | None = None,
             existing_only: bool = False) -> Iterator[Path]:
    """Hold the lock of the run (or grid) folder `folder` for the body of the `with` block.

    With `existing_only` (readers that rewrite a finished folder: `report`, `export`) a folder that
    does not exist is not locked: the command's own check names the missing folder, and no lock file
    is left in a place the user only mistyped."""
    path = lock_path(folder)
    if fcntl is None or (existing_only and not Path(folder).is_dir()):
        yield path
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder ({e.strerror or e})", where=str(path.parent)) from None
    # Resolved once the folder exists, so every name of one folder (relative, through a link) is one key.
    key = str(path.resolve())
    if key in _HELD:  # this process already holds it (run → its report)
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    try:
        fd, stale = _open_locked(path, lock_path_name_of(folder))
    except OSError as e:
        if existing_only and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            # A finished run on a read-only place: this process cannot write it either, so exporting
            # from it (which writes elsewhere) needs no lock; a report fails on its own writes.
            yield path
            return
        raise UserError(f"cannot create the lock file ({e.strerror or e})", where=str(path)) from None
    if stale and stale.get("pid") != os.getpid():
        message = (f"taking over the stale lock {path} left by {_describe(stale)}, which ended without "
                   "releasing it")
        (on_stale or _warn)(message)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, _holder_text().encode("utf-8"))
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        # Removed while still locked, so no writer can lock the old file after we let go of it.
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)


def lock_path_name_of(folder: str | Path) -> str:
    """The run's name as the user knows it (the final folder), for messages."""
    folder = Path(folder)
    name = folder.name
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
        name = name[1:-len(PARTIAL_SUFFIX)]
    return name


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
