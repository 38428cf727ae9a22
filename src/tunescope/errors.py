"""User-facing errors.

Anything the user can fix (a bad config key, a missing file, an unknown alias) is raised as
`UserError`. The CLI turns it into a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input. `where` names the file:line, key or field when known."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
