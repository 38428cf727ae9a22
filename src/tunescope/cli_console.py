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

from tunescope.pipeline import ProgressSink

console = Console(stderr=True)
out = Console()


def print_error(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


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
        self.bars.console.log(f"[cyan]▶ {name}")

    def advance(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.bars.add_task(what, total=total)
        self.bars.update(self.tasks[what], completed=done, total=total)

    def message(self, text: str) -> None:
        self.bars.console.log(text)
