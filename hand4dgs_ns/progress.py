"""The package's progress bars."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(disable: bool = False) -> Progress:
    """A transient rich progress bar for a loop whose body may raise.

    Used as ``with progress_bar() as p: for x in p.track(items, description=...)`` rather than
    ``rich.progress.track``: an exception raised inside a ``track`` loop leaves its generator,
    and its live display, suspended on the shared console until garbage collection, whose
    finaliser can then deadlock the next progress bar; the ``with`` block stops the display as
    the exception passes.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, transient=True, disable=disable)
