"""A hand matte from each frame's colour crop: where the frame shows a hand (or something in front of one).

With ``pixel_colors`` each Gaussian takes the colour under it in the frame, so a Gaussian the
predicted mesh puts a pixel or two beyond the frame's hand outline draws the room there: on unseen
videos that rim, not the colours, is most of the remaining image error (docs/benchmarks.md). The
matte says, per crop pixel, whether the frame shows the hand; each Gaussian's opacity is scaled by
the matte under its projected centre, so the drawn outline follows the frame's, not the mesh's.

The matte is a small encoder-decoder (a U-Net in miniature) trained by binary cross-entropy
against the training masks cut like the crops (:func:`matte_targets`); at prediction it needs
the frames only. The target counts hands and occluders (mask labels 1-3) as foreground, so a hand's
Gaussians behind the other hand or an object keep their opacity for other views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from hand4dgs_ns.data.sequence_format import hand_pixels, occluder_pixels
from hand4dgs_ns.geometry.mirror import CROPS_MIRRORED
from hand4dgs_ns.features.crops import crop_hands_per_image, crop_params, normalize_imagenet

START_LOGIT = 0.0
"""The untrained matte's logit everywhere. Its loss trains it from the first step, long before the
image phase renders anything; a start at "hand everywhere" (logit 4) left it still half-trained
when the image phase began at the network's decayed learning rate (a CPU-size run: its loss 3.4 ->
1.0 in the first 770 steps)."""


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.GroupNorm(4, cout),
        nn.ReLU(inplace=True),
    )


class HandMatte(nn.Module):
    """``(n, 3, h, w)`` crops in [0, 1] -> ``(n, h, w)`` logits of "the frame shows a hand here".

    Two stride-2 stages and two dilated ones give each output pixel a view of about a finger's
    length in a 192 x 144 crop; the decoder adds the full-resolution features back for the edges.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.stage1 = _block(3, width)
        self.stage2 = _block(width, 2 * width, stride=2)
        self.stage4 = nn.Sequential(
            _block(2 * width, 4 * width, stride=2), _block(4 * width, 4 * width, dilation=2), _block(4 * width, 4 * width, dilation=4)
        )
        self.up2 = _block(6 * width, 2 * width)
        self.up1 = _block(3 * width, width)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, START_LOGIT)

    def forward(self, crops: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n h w"]:
        full = self.stage1(normalize_imagenet(crops))
        half = self.stage2(full)
        quarter = self.stage4(half)
        x = self.up2(torch.cat([F.interpolate(quarter, size=half.shape[-2:], mode="bilinear", align_corners=False), half], 1))
        x = self.up1(torch.cat([F.interpolate(x, size=full.shape[-2:], mode="bilinear", align_corners=False), full], 1))
        return self.out(x)[:, 0]


def matte_targets(
    labels: Int[Tensor, "b H W"], bbox_xyxy: Float[Tensor, "b 2 4"], out_hw: tuple[int, int]
) -> Float[Tensor, "b 2 h w"]:
    """The training masks cut as each hand's colour crop is (boxes in the masks' pixels; the left
    hand's mirrored): 1 where the frame shows a hand or an occluder (labels 1-3), 0 on the room,
    bilinear (soft) at the outlines."""
    foreground = (hand_pixels(labels) | occluder_pixels(labels)).to(torch.float32)[..., None].expand(*labels.shape, 3)
    centre, size = crop_params(bbox_xyxy)
    flip = torch.tensor(CROPS_MIRRORED, device=labels.device).expand(labels.shape[0], 2)
    return crop_hands_per_image(foreground, centre, size.clamp(min=1.0), flip, out_hw, normalize=False)[:, :, 0]


def matte_loss(
    logits: Float[Tensor, "b 2 h w"], targets: Float[Tensor, "b 2 h w"], valid: Bool[Tensor, "b 2"]
) -> Float[Tensor, ""]:
    """Binary cross-entropy of the matte against its targets, over the crops of hands present."""
    per_crop = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=(-2, -1))
    weight = valid.to(per_crop.dtype)
    return (per_crop * weight).sum() / weight.sum().clamp(min=1.0)
