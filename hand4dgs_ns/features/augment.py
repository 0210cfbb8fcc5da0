"""Photometric jitter of training crops, so that a network trained on a few subjects and rooms
does not learn their skin tones and lighting as part of the hand.

Each video of a batch gets one random colour transform per hand and step, the same for every
frame of its windows (the temporal convolution must not see a flicker that the video does not
have). Geometric jitter is left out: the crops are cut once, into the feature cache, and the
hand's boxes place it in 3D. Written by hand because the crops are cached uint8 arrays grouped
by video, which torchvision's per-image transforms do not cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int, UInt8
from torch import Tensor


@dataclass(frozen=True)
class CropJitter:
    """Ranges of the jitter (each factor is drawn log-uniformly, 1 in the middle)."""

    brightness: float = 1.5
    """Largest brightness factor (its inverse is the smallest)."""
    contrast: float = 1.4
    """Largest contrast factor about the crop's mean."""
    colour: float = 1.2
    """Largest gain of one colour channel (white balance, skin tone)."""

    def __call__(
        self, crops: UInt8[Tensor, "U 2 3 h w"], video: Int[Tensor, "U"], generator: torch.Generator
    ) -> UInt8[Tensor, "U 2 3 h w"]:
        """Jittered ``crops``; rows of the same ``video`` (any ids) share one transform per hand."""
        ids, group = torch.unique(video, return_inverse=True)

        def factor(limit: float, *shape: int) -> Tensor:
            return torch.exp((torch.rand(len(ids), 2, *shape, generator=generator) * 2 - 1) * torch.log(torch.tensor(limit)))

        gain = (factor(self.brightness, 1) * factor(self.colour, 3))[group][..., None, None]
        contrast = factor(self.contrast, 1)[group][..., None, None]
        x = crops.float()
        mean = x.mean(dim=(2, 3, 4), keepdim=True)  # absent hands are zeros and stay zeros
        x = ((x - mean) * contrast + mean) * gain
        return x.clamp(0, 255).round().to(torch.uint8)
