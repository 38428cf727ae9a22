"""Small helpers shared by the analysis modules: the "cannot compute" answer, base64 for PNG bytes and a
standalone figure (PNG bytes come from `report.plots.figure_png`).

Every analysis function returns plain dictionaries that go straight into ``report.json``, so numpy
scalars must become Python numbers and non-finite values ``None`` (JSON has no NaN):
``store.scores.finite_float`` does that.
"""

from __future__ import annotations

import base64
from typing import Any


def unavailable(reason: str, **extra: Any) -> dict[str, Any]:
    """The uniform "cannot compute this" answer: callers render the reason instead of a number."""
    return {"available": False, "reason": reason, **extra}


def b64(data: bytes) -> str:
    """Base64 text for embedding PNG bytes in a JSON-serialisable dict (keys ending in ``_png``)."""
    return base64.b64encode(data).decode("ascii")


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure outside pyplot's global state (no GUI backend, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))
