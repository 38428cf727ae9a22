"""User-facing errors.

Anything the user can fix (a bad config key, a missing file, an unknown alias) is raised as
`UserError`. The CLI turns it into a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path


class UserError(Exception):
    """An error caused by user input. `where` names the file:line, key or field when known."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


# An error line longer than this is cut: a message quoting user input (a YAML value, a file's line) must
# stay one readable line whatever the input.
MAX_ERROR_CHARS = 600


def cap_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with a note of how much was left out."""
    flat = " ".join(str(text).split("\n"))
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}… ({len(flat) - limit} more characters)"


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one capped line: its first line of text, or its type when it has none."""
    lines = str(e).strip().splitlines()
    return cap_line(lines[0] if lines else type(e).__name__, limit)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, after its folder was left (marked failed) at `partial` for `--resume`."""

    def __init__(self, partial: Path):
        self.partial = partial
        super().__init__(str(partial))


# Failures of the file system that the user fixes (space, quota, permissions), not bugs.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _errno_of(err: BaseException) -> int | None:
    """The errno behind a failed write: OSError's own, or the "(os error N)" that safetensors' Rust
    writer puts in its message; torch.save says only "file write failed" (taken as a full disk)."""
    import re

    if isinstance(err, OSError):
        return err.errno
    text = str(err)
    if (m := re.search(r"os error (\d+)", text)) is not None:
        return int(m.group(1))
    if "file write failed" in text or "No space left on device" in text:
        return errno.ENOSPC
    return None


def storage_error(err: BaseException, where: str | Path | None = None) -> UserError | None:
    """A UserError for a full disk, a file-size limit or an unwritable place; None for anything else.

    A failed write() carries no file name, so the caller names the folder it was writing."""
    code = _errno_of(err)
    if code not in STORAGE_ERRNOS:
        return None
    filename = getattr(err, "filename", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device (free some space)"
    elif code == errno.EFBIG:
        what = "file too large for this system's file-size limit"
    elif code == errno.EROFS:
        what = "read-only file system"
    else:
        what = "permission denied (not writable)"
    return UserError(what, where=str(filename or where or "output"))


def check_writable_dir(path: str | Path, where: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written: a file in its place, a
    read-only parent. `where` names the option or key that chose it."""
    import tempfile

    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"'{probe}' is a file, not a folder", where=where)
    # Writing a file is the only test that holds for every user and file system (root ignores mode bits,
    # but not a read-only mount).
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UserError(f"cannot write in '{probe}' ({e.strerror or e})", where=where) from None
