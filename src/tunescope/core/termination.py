"""SIGTERM handled like Ctrl-C: a scheduler's or `kill`'s polite stop leaves a run folder marked, with
the hint to resume it, instead of a process that vanishes with its manifest still `running`.

The handler raises `KeyboardInterrupt`, so every place that cleans up after Ctrl-C (the run's folder
marked failed, a grid cell marked `interrupted`) does the same for SIGTERM; the exit code is then
143 (128 + SIGTERM) instead of Ctrl-C's 130.
"""

from __future__ import annotations

import signal

_terminated = False


def _on_sigterm(signum, frame) -> None:
    global _terminated
    _terminated = True
    # Once is enough: a second SIGTERM during the clean-up must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM")


def handle_sigterm() -> None:
    """Install the handler (the main thread of the command-line process only)."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave its handling alone
        pass


def interrupt_exit_code() -> int:
    """143 after SIGTERM, 130 after Ctrl-C."""
    return 128 + signal.SIGTERM if _terminated else 130


def interrupt_word() -> str:
    return "terminated (SIGTERM)" if _terminated else "interrupted"
