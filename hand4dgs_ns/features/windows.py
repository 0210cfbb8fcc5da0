"""Temporal windows over a sequence's frames."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor


def window_indices(frames: Int[Tensor, "b"], num_frames: Int[Tensor, "b"], half_width: int) -> Int[Tensor, "b w"]:
    """Frame indices ``[t-k, t+k]`` for each centre ``t``, edge-replicated at the sequence ends.

    The paper pads the temporal window beyond the video's ends by replicating the edge frame's
    features; clamping the indices does exactly that.
    """
    offsets = torch.arange(-half_width, half_width + 1, device=frames.device)
    idx = frames[:, None] + offsets[None, :]
    return torch.minimum(idx.clamp(min=0), (num_frames[:, None] - 1).clamp(min=0))
