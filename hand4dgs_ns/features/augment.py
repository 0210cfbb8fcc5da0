"""Jitter of training crops, so that a network trained on a few subjects and rooms does not
learn their skin tones, lighting and exact hand boxes as part of the hand.

Each video of a batch gets one random transform per hand and step, the same for every frame of
its windows (the temporal convolution must not see a flicker that the video does not have):
:class:`CropJitter` changes colours, :class:`BoxJitter` shrinks and moves the hand's box and
resamples the crops to match. The crops are cut once, into the feature cache, so the box can only
move within the cached crop (no pixels exist outside it). Written by hand because the crops are
cached uint8 arrays grouped by video, and the boxes must move with them, which torchvision's
per-image transforms do not cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, UInt8
from torch import Tensor

from hand4dgs_ns.features.crops import crop_params


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


@dataclass(frozen=True)
class BoxJitter:
    """A detector's box errors: each video's hand box shrinks by up to ``1 / zoom`` and moves within
    its crop, the crops are resampled to the new box, and the network sees the moved box.

    Boxes place the hand in 3D (its depth prior comes from the box size), so the network learns to
    correct a box from the image rather than to trust it. Left-hand crops are mirrored, so their
    horizontal move is mirrored too. Crops are cut with :func:`crop_params`' default rescale.
    """

    zoom: float = 1.25
    """Largest zoom into the cached crop (the box shrinks to between ``1 / zoom`` and 1 of its size)."""

    def __call__(
        self,
        crops: UInt8[Tensor, "U 2 3 h w"],
        crop_video: Int[Tensor, "U"],
        bbox: Float[Tensor, "b 2 4"],
        box_video: Int[Tensor, "b"],
        generator: torch.Generator,
    ) -> tuple[UInt8[Tensor, "U 2 3 h w"], Float[Tensor, "b 2 4"]]:
        """Jittered crops and the matching boxes (image pixels); one transform per video id and hand."""
        ids, group = torch.unique(torch.cat([crop_video, box_video]), return_inverse=True)
        scale = torch.exp(-torch.rand(len(ids), 2, generator=generator) * math.log(self.zoom))
        # The new crop window, in the cached crop's [-1, 1] coordinates: centre `shift`, half-size
        # `scale`, always inside the cached crop.
        shift = (torch.rand(len(ids), 2, 2, generator=generator) * 2 - 1) * (1 - scale)[..., None]
        crop_group, box_group = group[: len(crop_video)], group[len(crop_video) :]

        u, _, c, h, w = crops.shape
        theta = torch.zeros(u * 2, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = scale[crop_group].reshape(-1)
        theta[:, :, 2] = shift[crop_group].reshape(-1, 2)
        grid = F.affine_grid(theta, [u * 2, c, h, w], align_corners=False)
        moved = F.grid_sample(crops.reshape(u * 2, c, h, w).float(), grid, mode="bilinear", align_corners=False)
        moved = moved.round().clamp(0, 255).to(torch.uint8).reshape(crops.shape)

        centre, size = crop_params(bbox)
        half_crop = torch.stack([size * (w / h), size], dim=-1) / 2  # the crop's half-extent in pixels
        offset = shift[box_group] * half_crop
        offset[:, 0, 0] = -offset[:, 0, 0]  # slot 0: the left hand, whose crop is mirrored
        half_box = (bbox[..., 2:] - bbox[..., :2]) / 2 * scale[box_group][..., None]
        new_centre = centre + offset
        return moved, torch.cat([new_centre - half_box, new_centre + half_box], dim=-1)


@dataclass(frozen=True)
class Augment:
    """The jitters a training step applies to its crops (and boxes), drawn from ``generator``."""

    generator: torch.Generator
    colour: CropJitter | None = None
    box: BoxJitter | None = None
