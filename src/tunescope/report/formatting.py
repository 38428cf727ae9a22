"""How numbers are written in reports, their generated sentences and on the command line: percentages,
score ± stderr, p-values. The report, the analysis sentences, the comparison and the grid all use these.

Every formatter writes "—" for a missing value (None, NaN, or a template's undefined value).
"""

from __future__ import annotations

import math

from jinja2 import Undefined


def missing(x) -> bool:
    return x is None or isinstance(x, Undefined) or (isinstance(x, float) and math.isnan(x))


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
