"""`tunescope serve`: the options of the local dashboard (the server itself is `tunescope.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunescope.core.errors import UserError


def serve(
    port: Annotated[str, typer.Option("--port", metavar="PORT", help="Port to listen on (0: any free "
                                      "port).")] = "8765",
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but 127.0.0.1 / localhost / ::1 "
                                           "needs --token.")] = "127.0.0.1",
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Folder to watch for runs that are "
                                                  "still training (default: ./runs). Registered runs are "
                                                  "shown wherever they are.")] = None,
    token: Annotated[str | None, typer.Option(envvar="TUNESCOPE_SERVE_TOKEN",
                                              help="Secret every browser must present (open the printed "
                                                   "address once; a cookie keeps it).")] = None,
) -> None:
    """A local, read-only web dashboard of every run: the runs table, each run's report and config, live
    progress while a run trains, comparisons, grids and the leaderboard."""
    try:
        from tunescope.serve.server import serve as start
    except ImportError as e:
        raise UserError(f"the dashboard needs the serve extra ({e.name} is not installed): "
                        "pip install 'tunescope[serve]'", where="serve") from None
    start(host=host, port=port, token=token, runs_dir=runs_dir)
