"""Report rendering: Markdown, self-contained HTML and JSON from the analysis dictionary."""

from tunescope.report.render import render_all

__all__ = ["render_all"]
