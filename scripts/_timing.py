"""Wall-clock timing shared by the benchmark scripts (run as ``python scripts/<name>.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def times_ms(fn: Callable[[], object], repeats: int, cuda: bool, warmup: int) -> list[float]:
    """Wall times of ``fn`` in milliseconds after ``warmup`` untimed runs; with ``cuda`` the GPU
    is synchronised around each run, so its queued work counts."""
    times = []
    for i in range(repeats + warmup):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - start))
    return times
