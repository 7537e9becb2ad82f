"""The progress bar of `tusd-py upload`, drawn by rich on stderr: bytes, rate and ETA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
# (set the offset, print a notice line)
Reporters = tuple[Callable[[int], None], Callable[[str], None]]


class BinaryRateColumn(ProgressColumn):
    """Bytes per second in KiB/MiB, matching the bar's sizes (rich's own rate is in kB/MB)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        unit, suffix = filesize.pick_unit_and_suffix(int(speed), _BINARY, 1024)
        return Text(f"{speed / unit:.1f} {suffix}/s", style="progress.data.speed")


@contextmanager
def progress_bar(
    label: str, total: int, enabled: bool
) -> Iterator[tuple[Callable[[int], None], Callable[[str], None]]]:
    """Yields (set the offset, print a notice line); notices print even with the bar off."""
    console = Console(stderr=True, highlight=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        BinaryRateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled) as progress:
        task = progress.add_task(label, total=total)

        def advance(offset: int) -> None:
            progress.update(task, completed=offset)

        def notice(text: str) -> None:
            # Server messages and URLs are not markup; one notice stays one line for grep.
            progress.console.print(text, markup=False, soft_wrap=True)

        yield advance, notice
