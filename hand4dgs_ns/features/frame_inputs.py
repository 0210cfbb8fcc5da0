"""The model's per-frame inputs: backbone crops or tokens, boxes and ego cameras, for every frame.

The network is feed-forward: any frame of any sequence (a training frame, a held-out one, the
frame under the viewer's time slider) is predicted from that frame's window of backbone inputs
and its ego camera. Those inputs are data, not weights, so they travel to the model beside the
dataparser's metadata and never enter a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from hand4dgs_ns.features.windows import window_indices

INPUTS_KEY = "hand4dgs_inputs"
"""Key of :class:`FrameInputs` in the datasets' ``metadata`` dict."""


@dataclass(frozen=True)
class FrameInputs:
    """All sequences' frames, concatenated; sequence ``s`` holds rows ``offsets[s] : offsets[s] + lengths[s]``."""

    kind: Literal["crops", "tokens"]
    """``crops``: uint8 hand crops for a backbone trained with the model; ``tokens``: a frozen backbone's float16 tokens."""
    data: Tensor
    """(T, 2, 3, h, w) uint8 crops or (T, 2, tokens, channels) float16 tokens; slot 0 left, 1 right."""
    bbox: Float[Tensor, "T 2 4"]
    """Hand boxes, xyxy pixels of the ego frame."""
    valid: Bool[Tensor, "T 2"]
    """Hand present and usable."""
    K: Float[Tensor, "T 3 3"]
    """Ego camera intrinsics."""
    c2w: Float[Tensor, "T 4 4"]
    """Ego camera-to-world, OpenCV axes."""
    image_hw: Int[Tensor, "S 2"]
    """Ego frame height and width per sequence."""
    offsets: Int[Tensor, "S"]
    """First row of each sequence."""
    lengths: Int[Tensor, "S"]
    """Frames per sequence."""

    def __deepcopy__(self, memo: dict[int, Any]) -> FrameInputs:
        # nerfstudio deep-copies dataset metadata; these read-only arrays are shared instead.
        return self

    def to(self, device: torch.device | str) -> FrameInputs:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)})

    def rows(self, sequence: Int[Tensor, "b"], frame: Int[Tensor, "b"]) -> Int[Tensor, "b"]:
        """Flat row of each (sequence, frame), frames clamped into their sequence."""
        length = self.lengths[sequence]
        return self.offsets[sequence] + torch.minimum(frame.clamp(min=0), length - 1)

    def window_rows(self, sequence: Int[Tensor, "b"], frame: Int[Tensor, "b"], half_width: int) -> Int[Tensor, "b w"]:
        """Flat rows of each frame's temporal window, edge-replicated at the sequence's ends."""
        return self.offsets[sequence, None] + window_indices(frame, self.lengths[sequence], half_width)
