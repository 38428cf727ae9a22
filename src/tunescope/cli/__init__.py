"""The command line: typer commands, where they print, the run registry's tables, the dashboard's
options.

`tunescope.cli` stays the console entry point (`tunescope = "tunescope.cli:main"`)."""

from tunescope.cli.commands import app, main

__all__ = ["app", "main"]
