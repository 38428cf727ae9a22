"""How numbers are written in reports, their generated sentences and on the command line: percentages,
score ± stderr, p-values. The report, the analysis sentences, the comparison and the grid all use these.

Every formatter writes "—" for a missing value (None, NaN or ±infinity). A template's undefined name is
not a missing value: the report environments use StrictUndefined, so it fails the render.
"""

from __future__ import annotations

import math


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if missing(x) else f"{x * 100:.{digits}f}%"


def pm(x: float | None, se: float | None, digits: int = 2) -> str:
    """``33.51% ± 1.30%`` (a fraction and its standard error, as lm-evaluation-harness prints them)."""
    if missing(x):
        return "—"
    return pct(x, digits) + ("" if missing(se) else f" ± {se * 100:.{digits}f}%")


def number(x, digits: int = 4) -> str:
    """Integers with thousands separators, floats to `digits` significant digits, anything else as text."""
    if missing(x):
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.{digits}g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def signed(x: float | None, digits: int = 2) -> str:
    return "—" if missing(x) else f"{x:+.{digits}f}"


def formatted(x: float | None, spec: str) -> str:
    """`x` in a format spec (``.3g``, ``+.2f``), or "—"."""
    return "—" if missing(x) else format(x, spec)


def pval(p: float | None) -> str:
    if missing(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def peq(p: float | None) -> str:
    """``=0.012`` or ``<0.001`` to follow a ``p``; `` —`` when there is none."""
    text = pval(p)
    return text if text.startswith("<") else f"={text}" if text != "—" else " —"


def flops(x: float | None) -> str:
    """A FLOP/s figure in the unit that keeps it readable: ``218 GFLOP/s``, ``989 TFLOP/s``."""
    if missing(x):
        return "—"
    return f"{x / 1e12:.3g} TFLOP/s" if x >= 1e12 else f"{x / 1e9:.3g} GFLOP/s"


def dollars(x: float | None) -> str:
    return f"${x:.4f}"


def setting(value) -> str:
    """A configuration value as a person reads it: "not set" for None, lists joined with commas, yes/no."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value, 6)
    if isinstance(value, list | tuple | set):
        return ", ".join(setting(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k} {setting(v)}" for k, v in value.items()) if value else "none"
    return str(value)
