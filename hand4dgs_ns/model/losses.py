"""Hand-4DGS losses and the two-phase loss schedule (pure functions).

Paper, section 3.5: a vertex loss to pseudo-labels, an image loss ``L1 + lambda (1 - SSIM)``
on the hand-masked frame, a scale-range regulariser and an opacity-to-one regulariser.
Schedule: vertex loss alone first; then the image loss switches on and the vertex weight
decays linearly to zero (or to a floor).

Beyond the paper, for the image phase: a silhouette loss (rendered opacity against the hand
mask) and a joint-acceleration penalty over neighbouring frames (see their docstrings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from pytorch_msssim.ssim import _fspecial_gauss_1d
from torch import Tensor

from hand4dgs_ns.constants import constant
from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER, hand_pixels, occluder_pixels
from hand4dgs_ns.eval.metrics import WRIST, bone_lengths

# pytorch_msssim's default SSIM: an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03.
_SSIM_WINDOW = tuple(float(w) for w in _fspecial_gauss_1d(11, 1.5).flatten())
_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2


@dataclass(frozen=True)
class LossSchedule:
    """Step-dependent loss weights.

    ``image_start``: first step with the image loss. ``vertex_decay_steps``: the vertex weight
    falls linearly from 1 to the floor over this many steps after ``image_start`` (0: it is the
    floor from ``image_start`` on).
    """

    image_start: int
    vertex_decay_steps: int
    vertex_floor: float = 0.0
    """The vertex weight never falls below this."""

    def vertex_weight(self, step: int) -> float:
        if step < self.image_start:
            return 1.0
        if self.vertex_decay_steps <= 0:
            return self.vertex_floor
        return max(self.vertex_floor, 1.0 - (step - self.image_start) / self.vertex_decay_steps)

    def image_weight(self, step: int) -> float:
        return 1.0 if step >= self.image_start else 0.0


def point_loss(
    pred: Float[Tensor, "*b n 3"], target: Float[Tensor, "*b n 3"], valid: Bool[Tensor, "*b"]
) -> Tensor:
    """Mean squared distance (m^2) between matching points of the valid hands (0 when none)."""
    return _mean_over_valid_hands(((pred - target) ** 2).sum(-1).mean(-1), valid)


def _mean_over_valid_hands(per_hand: Float[Tensor, "*b"], valid: Bool[Tensor, "*b"]) -> Tensor:
    """Mean of ``per_hand`` over the valid hands (0 when none)."""
    weight = valid.to(per_hand.dtype)
    return (per_hand * weight).sum() / weight.sum().clamp(min=1.0)


def vertex_loss(
    pred: Float[Tensor, "*b n 3"],
    target: Float[Tensor, "*b n 3"],
    pred_joints: Float[Tensor, "*b j 3"],
    target_joints: Float[Tensor, "*b j 3"],
    valid: Bool[Tensor, "*b"],
    relative_weight: float = 0.0,
) -> Tensor:
    """The pseudo-label loss: :func:`point_loss` on the points as placed, plus ``relative_weight``
    times the same on the points relative to their hand's wrist joint.

    On placed points alone, a hand put a little off can be pulled back by bending its fingers
    (that moves the points' mean), so the pose learns to make up for the placement; the
    wrist-relative term asks for the articulation on its own.
    """
    loss = point_loss(pred, target, valid)
    if relative_weight > 0:
        wrist = slice(WRIST, WRIST + 1)
        loss = loss + relative_weight * point_loss(pred - pred_joints[..., wrist, :], target - target_joints[..., wrist, :], valid)
    return loss


def bone_length_loss(pred_joints: Float[Tensor, "*b 21 3"], target_joints: Float[Tensor, "*b 21 3"], valid: Bool[Tensor, "*b"]) -> Tensor:
    """Mean squared difference (m^2) of the 20 bone lengths, valid hands only (0 when none).

    Bone lengths do not change with the pose, so this asks for the hand's size alone. Trained over
    many videos without it, held-out hands came out 0.76-0.84 of their size (docs/benchmarks.md),
    likely because shorter fingers stray less wherever a network unsure of the pose points them.
    """
    sq = ((bone_lengths(pred_joints) - bone_lengths(target_joints)) ** 2).mean(-1)
    return _mean_over_valid_hands(sq, valid)


def masked_target(
    image: Float[Tensor, "b h w 3"], hand_mask: Float[Tensor, "b h w 1"], background: Float[Tensor, "b 3"]
) -> Float[Tensor, "b h w 3"]:
    """The frame's hands over the render's background: what a perfect render would show."""
    bg = background[:, None, None, :]
    return image * hand_mask + bg * (1.0 - hand_mask)


def occlusion_aware_pair(
    render: Float[Tensor, "b h w 3"], image: Float[Tensor, "b h w 3"], labels: Tensor, background: Float[Tensor, "b 3"]
) -> tuple[Tensor, Tensor]:
    """The (render, target) pair the image loss compares: the target is the frame's hands (mask
    labels 1, 2) over the render's background; where an occluder covers the frame (label 3) the
    render is replaced by the target, so those pixels neither reward nor punish the hand there."""
    target = masked_target(image, hand_pixels(labels).to(image.dtype)[..., None], background)
    return torch.where(occluder_pixels(labels)[..., None], target, render), target


def outline_left_out(labels: Tensor, width: int) -> Tensor:
    """``labels`` (b, h, w) with the pixels within ``width`` of a hand outline, either side, marked as
    occluder (left out of the image losses).

    Masks drawn from the pseudo-label meshes (as real footage's are, from the hand estimator's)
    put each outline where the pseudo-labels put the hand; a rendered hand that sits where the
    frame shows it would be pulled back onto that outline. Leaving a band round it out keeps the
    hands' inner pixels and the background far from them, which such masks get right. Occluder
    pixels count as not hand, so a hand's edge along an occluder is left out too.
    """
    if width <= 0:
        return labels
    hand = hand_pixels(labels).to(torch.float32)[:, None]
    k = 2 * width + 1
    near_hand = F.max_pool2d(hand, k, stride=1, padding=width)[:, 0] > 0
    near_background = F.max_pool2d(1.0 - hand, k, stride=1, padding=width)[:, 0] > 0
    return torch.where(near_hand & near_background, torch.full_like(labels, MASK_OCCLUDER), labels)


def silhouette_loss(alpha: Float[Tensor, "b h w 1"], labels: Tensor) -> Tensor:
    """Mean ``|alpha - hand mask|`` over the pixels no occluder covers.

    The colour loss sees a misplaced finger only where its colour differs from what lies under
    it; the outline of the rendered opacity against the mask's pulls the splats (and through
    them the mesh) onto the hands wherever the outlines disagree. Occluded pixels are left out,
    as in :func:`occlusion_aware_pair`: the hand may well be there, unseen.
    """
    hand = hand_pixels(labels).to(alpha.dtype)
    keep = (~occluder_pixels(labels)).to(alpha.dtype)
    return ((alpha[..., 0] - hand).abs() * keep).sum() / keep.sum().clamp(min=1.0)


def coarse_image_loss(
    render: Float[Tensor, "b h w 3"], target: Float[Tensor, "b h w 3"], alpha: Float[Tensor, "b h w 1"], labels: Tensor,
    factors: tuple[int, ...],
) -> Tensor:
    """Colour L1 plus silhouette L1 on images average-pooled by each of ``factors``, summed.

    A splat only gets gradient from the pixels it covers, so a finger drawn more than its own
    width from where the frame shows it is pulled back by nothing at full resolution. Pooled,
    the misplaced mass and the missing mass fall in neighbouring cells, which pulls it over;
    coarse-to-fine image losses do this in model-based tracking. ``render`` and ``target`` are
    the occlusion-aware pair; occluded pixels count as agreeing for the silhouette too.
    """
    keep = (~occluder_pixels(labels)).to(alpha.dtype)[..., None]
    hand = hand_pixels(labels).to(alpha.dtype)[..., None]
    ours = torch.cat([render, alpha * keep], dim=-1).permute(0, 3, 1, 2)
    theirs = torch.cat([target, hand * keep], dim=-1).permute(0, 3, 1, 2)
    total = render.new_zeros(())
    for f in factors:
        total = total + (F.avg_pool2d(ours, f) - F.avg_pool2d(theirs, f)).abs().mean(dim=(0, 2, 3)).sum() / 2.0
    return total


def acceleration_loss(
    before: Float[Tensor, "b 2 21 3"], now: Float[Tensor, "b 2 21 3"], after: Float[Tensor, "b 2 21 3"], valid: Bool[Tensor, "b 2"]
) -> Tensor:
    """Mean squared second difference (m^2) of joints over three consecutive frames, valid hands only.

    The image loss fits each frame on its own; without the pseudo-labels' pull (decayed away) the
    poses it finds jitter from frame to frame. This is the constant-velocity prior that keeps
    them smooth, evaluated on the frames either side of each training frame.
    """
    return point_loss(before - 2.0 * now + after, torch.zeros_like(now), valid)


def image_loss(
    render: Float[Tensor, "b h w 3"], target: Float[Tensor, "b h w 3"], ssim_lambda: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``L1 + lambda (1 - SSIM)`` (paper, section 3.5); returns (loss, l1, ssim)."""
    l1 = (render - target).abs().mean()
    s = ssim(render, target)
    return l1 + ssim_lambda * (1.0 - s), l1, s


def ssim(x: Float[Tensor, "b h w c"], y: Float[Tensor, "b h w c"]) -> Tensor:
    """Mean SSIM of images in [0, 1], exactly ``pytorch_msssim.ssim(..., data_range=1)``.

    Written here because pytorch_msssim filters its five local statistics (x, y, x^2, y^2, xy)
    in ten separate convolutions; stacking them filters all five in two, which is what a
    training step on a GPU spends its SSIM time on. Like pytorch_msssim, the filtering is
    "valid" (no padding) and skips a dimension shorter than the window.
    """
    c = x.shape[-1]
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1).contiguous()  # (b, 5c, h, w)
    taps = len(_SSIM_WINDOW)
    window = constant(_SSIM_WINDOW * (5 * c), x.device, x.dtype)
    for dim in (2, 3):
        if stats.shape[dim] >= taps:
            shape = (5 * c, 1, taps, 1) if dim == 2 else (5 * c, 1, 1, taps)
            stats = F.conv2d(stats, window.reshape(shape), groups=5 * c)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs = (2 * (xy - mu_xy) + _SSIM_C2) / ((xx - mu_xx) + (yy - mu_yy) + _SSIM_C2)
    ssim_map = (2 * mu_xy + _SSIM_C1) / (mu_xx + mu_yy + _SSIM_C1) * cs
    return ssim_map.flatten(2).mean(-1).mean()


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
