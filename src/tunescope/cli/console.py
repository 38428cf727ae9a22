"""Where the CLI writes: results to stdout, progress and errors to stderr (so a results table can be
piped), the progress bars of every long step, and the one-line error message."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tunescope.recipes.run import ProgressSink

# Paths, run names and values come from the user: no text is read as console markup (a path with
# "[/x]" in it is printed as it is). The few styled lines ask for markup and escape what they quote.
console = Console(stderr=True, markup=False)
out = Console(markup=False)


def print_error(message: str) -> None:
    from rich.markup import escape

    from tunescope.core.errors import cap_line

    console.print(f"[bold red]error:[/] {escape(cap_line(message))}", markup=True, highlight=False,
                  soft_wrap=True)


class RichProgress(ProgressSink):
    """Progress bars for every long step."""

    def __init__(self) -> None:
        self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def stage(self, name: str) -> None:
        from rich.markup import escape

        self.bars.console.log(f"[cyan]▶ {escape(name)}", markup=True)

    def advance(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            from rich.markup import escape

            # The description column is markup ("[bold]{task.description}"): the task name is escaped.
            self.tasks[what] = self.bars.add_task(escape(what), total=total)
        self.bars.update(self.tasks[what], completed=done, total=total)

    def message(self, text: str) -> None:
        self.bars.console.log(text, markup=False)
