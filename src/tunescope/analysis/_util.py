"""Small helpers shared by the analysis modules: JSON-safe numbers and PNG encoding.

Every analysis function returns plain dictionaries that go straight into ``report.json``, so numpy
scalars must become Python numbers and non-finite values must become ``None`` (JSON has no NaN).
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any


def num(x: Any) -> float | None:
    """A finite Python float, or ``None`` for missing / NaN / infinite values."""
    if x is None:
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def unavailable(reason: str, **extra: Any) -> dict[str, Any]:
    """The uniform "cannot compute this" answer: callers render the reason instead of a number."""
    return {"available": False, "reason": reason, **extra}


def figure_png(fig: Any) -> bytes:
    """Render a matplotlib figure to PNG bytes.

    The ``Software`` metadata entry is dropped so that the bytes depend only on the picture, which
    keeps plots byte-for-byte reproducible across runs of the same matplotlib version.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def b64(data: bytes) -> str:
    """Base64 text for embedding PNG bytes in a JSON-serialisable dict (keys ending in ``_png``)."""
    return base64.b64encode(data).decode("ascii")


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure outside pyplot's global state (no GUI backend, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))
