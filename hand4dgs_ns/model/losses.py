"""Hand-4DGS losses and the two-phase loss schedule (pure functions).

Paper, section 3.5: a vertex loss to pseudo-labels, an image loss ``L1 + lambda (1 - SSIM)``
on the hand-masked frame, a scale-range regulariser and an opacity-to-one regulariser.
Schedule: vertex loss alone first; then the image loss switches on and the vertex weight
decays linearly to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from pytorch_msssim import ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d
from torch import Tensor

from hand4dgs_ns.constants import constant

_SSIM_WINDOW = tuple(float(w) for w in _fspecial_gauss_1d(11, 1.5).flatten())


@dataclass(frozen=True)
class LossSchedule:
    """Step-dependent loss weights.

    ``image_start``: first step with the image loss. ``vertex_decay_steps``: the vertex weight
    falls linearly from 1 to 0 over this many steps after ``image_start`` (0: no decay).
    """

    image_start: int
    vertex_decay_steps: int

    def vertex_weight(self, step: int) -> float:
        if step < self.image_start or self.vertex_decay_steps <= 0:
            return 1.0
        return max(0.0, 1.0 - (step - self.image_start) / self.vertex_decay_steps)

    def image_weight(self, step: int) -> float:
        return 1.0 if step >= self.image_start else 0.0


def point_loss(
    pred: Float[Tensor, "*b n 3"], target: Float[Tensor, "*b n 3"], valid: Bool[Tensor, "*b"]
) -> Tensor:
    """Mean squared distance (m^2) between matching points of the valid hands (0 when none)."""
    sq = ((pred - target) ** 2).sum(-1).mean(-1)
    weight = valid.to(sq.dtype)
    return (sq * weight).sum() / weight.sum().clamp(min=1.0)


def masked_target(
    image: Float[Tensor, "b h w 3"], hand_mask: Float[Tensor, "b h w 1"], background: Float[Tensor, "b 3"]
) -> Float[Tensor, "b h w 3"]:
    """The frame's hands over the render's background: what a perfect render would show."""
    bg = background[:, None, None, :]
    return image * hand_mask + bg * (1.0 - hand_mask)


def image_loss(
    render: Float[Tensor, "b h w 3"], target: Float[Tensor, "b h w 3"], ssim_lambda: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``L1 + lambda (1 - SSIM)`` (paper, section 3.5); returns (loss, l1, ssim)."""
    l1 = (render - target).abs().mean()
    # pytorch_msssim's default window (11 taps, sigma 1.5), made once per device.
    window = constant(_SSIM_WINDOW, render.device, render.dtype).reshape(1, 1, 1, -1).expand(render.shape[-1], 1, 1, -1)
    s = ssim(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, size_average=True, win=window)
    return l1 + ssim_lambda * (1.0 - s), l1, s


def scale_range_loss(scales: Float[Tensor, "*b 3"], min_scale: float, max_scale: float) -> Tensor:
    """Penalises Gaussian scales (metres) outside ``[min_scale, max_scale]``."""
    return (torch.relu(min_scale - scales) + torch.relu(scales - max_scale)).mean() / max_scale


def opacity_loss(opacities: Float[Tensor, "b 2g"], valid: Bool[Tensor, "b 2"]) -> Tensor:
    """Pushes the mean opacity of the present hands' Gaussians to one: hands are opaque.

    ``opacities`` holds both hands' Gaussians (left half first, the same count per hand); absent
    hands are masked by a weight rather than by boolean indexing, which would make the GPU wait
    for the host.
    """
    per_hand = opacities.reshape(*valid.shape, -1).mean(dim=-1)
    weight = valid.to(opacities.dtype)
    return 1.0 - (per_hand * weight).sum() / weight.sum().clamp(min=1.0)
