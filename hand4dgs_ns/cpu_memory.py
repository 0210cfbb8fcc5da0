"""Freed memory kept for the next CPU training step (glibc's allocator)."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20
"""glibc's largest allowed mmap threshold on 64-bit machines."""


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks up to 32 MiB from its heap and keep what is freed.

    PyTorch's CPU tensors come straight from malloc. By default glibc gives large blocks back to the
    operating system when they are freed, so each training step pays a page fault per 4 KiB of every
    large tensor it allocates again: about 10,000 faults per image-loss step of the CPU demo (one
    weight gradient of 13 MB alone took 8.4 ms per step, 3.0 ms with this). No library sets this, so
    it is written here: ``mallopt`` through ctypes. Returns whether the setting took (not on other
    C libraries or systems).
    """
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # The heap's top is given back only when over 1 GiB of it lies free: freed memory stays for reuse.
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))
