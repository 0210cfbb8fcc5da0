"""Building many videos' cache entries at once, behind one progress bar.

A set of a hundred videos has a few hundred entries (frames, masks, crops) to build on its first
run. Each is decoding and resizing (PIL and OpenCV release the GIL) plus a little torch, so
threads build several videos at a time; one bar counts videos instead of one bar per entry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hand4dgs_ns.features.cache import FeatureCache

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 8


def default_workers() -> int:
    """Threads for building entries: the machine's cores, at most :data:`MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class SharedBar:
    """One bar over a set of videos, shown from the first entry that has to be built (a set whose
    entries are all valid shows none); thread-safe."""

    def __init__(self, console: Console, description: str, total: int):
        self._console = console
        self._description = description
        self._total = total
        self._done = 0
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task = None

    def building(self) -> None:
        """Called by a cache entry about to be built."""
        with self._lock:
            if self._progress is None:
                columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
                self._progress = Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=self._console)
                self._progress.start()
                self._task = self._progress.add_task(self._description, total=self._total, completed=self._done)

    def video_done(self) -> None:
        with self._lock:
            self._done += 1
            if self._progress is not None:
                self._progress.update(self._task, completed=self._done)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()


def map_videos(
    fn: Callable[[T], R], videos: Sequence[T], cache: FeatureCache, description: str, workers: int | None = None
) -> list[R]:
    """``[fn(v) for v in videos]``, run on ``workers`` threads (default :func:`default_workers`).

    ``fn`` builds or loads entries of ``cache``; while it runs, their builds report to one shared
    bar (``description``, counted in videos). The first error stops the videos not yet started and
    is raised; entries being built by then finish or are left as temporary files, never as
    entries that look valid (see :class:`~hand4dgs_ns.features.cache.FeatureCache`).
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(videos) <= 1:
        return [fn(video) for video in videos]
    bar = SharedBar(cache.console, description, len(videos))
    cache.shared_bar = bar
    pool = ThreadPoolExecutor(max_workers=min(workers, len(videos)))
    try:
        futures = [pool.submit(fn, video) for video in videos]
        for future in as_completed(futures):
            future.result()  # the first error, as soon as it happens
            bar.video_done()
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cache.shared_bar = None
        bar.close()
