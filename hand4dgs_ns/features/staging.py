"""Host-to-GPU copies that do not make the host wait for the GPU.

A copy from ordinary (pageable) host memory waits for the GPU to finish its queued work
before it starts, so a training step whose inputs come from the host would lose the overlap of
host and GPU that keeps launch-bound steps fast. Copies from page-locked memory are queued like
kernels. :class:`PinnedStager` keeps a few reusable page-locked buffers per shape and reuses one
only once the GPU has finished reading it (a CUDA event per buffer). Written by hand: torch's
``pin_memory()`` allocates (and page-locks) new memory on every call, which is slow.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class PinnedStager:
    """Copies arrays to a device; through reusable page-locked buffers when the device is CUDA."""

    def __init__(self, device: torch.device | str, depth: int = 6):
        self.device = torch.device(device)
        self.depth = depth
        self._buffers: dict[tuple, list[tuple[Tensor, torch.cuda.Event | None]]] = {}
        self._next: dict[tuple, int] = {}

    def to_device(self, array: np.ndarray | Tensor) -> Tensor:
        """``array`` on the device; the call returns before the copy has run on a CUDA device."""
        host = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
        if self.device.type != "cuda":
            return host.to(self.device)
        key = (tuple(host.shape), host.dtype)
        ring = self._buffers.setdefault(key, [])
        if len(ring) < self.depth:
            ring.append((torch.empty(host.shape, dtype=host.dtype, pin_memory=True), None))
        i = self._next.get(key, 0) % len(ring)
        self._next[key] = i + 1
        buffer, done = ring[i]
        if done is not None:
            done.synchronize()  # the copy queued from this buffer `depth` calls ago has run
        buffer.copy_(host)
        out = buffer.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        ring[i] = (buffer, event)
        return out
