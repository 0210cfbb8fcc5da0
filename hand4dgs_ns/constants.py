"""Small constant tensors made once per device and dtype.

Building a tensor from Python numbers on a GPU copies it from the host, and a plain copy makes
the host wait until the GPU has finished everything queued before it; in a training step that
wait serialises the CPU and the GPU. Constants used every step come from here instead.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=None)
def _cached(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, device=device, dtype=dtype)


def constant(values: tuple, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.tensor(values)`` on ``device``, created on first use and shared afterwards (do not modify it)."""
    if torch.compiler.is_compiling():  # torch.compile bakes the value into its graph; no cache needed
        return torch.tensor(values, device=device, dtype=dtype)
    return _cached(values, torch.device(device), dtype)
