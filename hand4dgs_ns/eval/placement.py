"""Where an absolute joint error comes from: the hand's size, its distance along the camera ray,
or its position across the image. Pure functions.

One image cannot tell a small hand near the camera from a large hand farther away: scaling the
hand about the camera centre leaves its image unchanged. A predictor that sees one frame can
therefore at best give a typical size, and then places the hand at the distance where that size
fills the image as the real hand does. ``size_ambiguity_floor_mm`` is the MPJPE of such a
single-frame predictor right in everything but the size, on clips whose labels know each
subject's true size (as the synthetic pseudo-labels do). A method that sees several frames of a
moving, metrically tracked camera could in principle do better; one that works frame by frame
cannot.

Joints in metres in OpenPose order, world frame; camera centres in the same frame; results in
millimetres or as ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.eval.metrics import M_TO_MM, WRIST, bone_lengths, joint_errors_mm, masked_mean, root_aligned


def hand_size(joints: Float[Tensor, "*b 21 3"]) -> Float[Tensor, "*b"]:
    """The summed length of the 20 bones (metres): unchanged by the pose, so a measure of the hand's size."""
    return bone_lengths(joints).sum(dim=-1)


def wrist_depth_error(
    pred: Float[Tensor, "*b 21 3"], gt: Float[Tensor, "*b 21 3"], camera_centres: Float[Tensor, "*b 3"]
) -> Float[Tensor, "*b"]:
    """Predicted wrist's distance from the camera centre minus the true one's (metres; negative: too near)."""
    return (pred[..., WRIST, :] - camera_centres).norm(dim=-1) - (gt[..., WRIST, :] - camera_centres).norm(dim=-1)


@dataclass(frozen=True)
class PlacementErrors:
    """Means over the valid hands."""

    mpjpe_mm: float
    ra_mpjpe_mm: float
    wrist_mm: float
    """Distance between the predicted and the true wrist."""
    depth_mm: float
    """Signed: predicted wrist's distance from the camera centre minus the true one's (negative: too near)."""
    abs_depth_mm: float
    lateral_mm: float
    """The wrist error across the camera ray (perpendicular to the ray through the true wrist)."""
    size_ratio: float
    """Predicted hand size over the true one."""


def placement_errors(
    pred: Float[Tensor, "*b 21 3"],
    gt: Float[Tensor, "*b 21 3"],
    camera_centres: Float[Tensor, "*b 3"],
    valid: Bool[Tensor, "*b"] | None = None,
) -> PlacementErrors:
    """Splits the absolute error of ``pred`` into the hand's size, its depth and its lateral position."""
    to_pred = pred[..., WRIST, :] - camera_centres
    to_gt = gt[..., WRIST, :] - camera_centres
    ray = to_gt / to_gt.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    wrist_error = to_pred - to_gt
    depth = wrist_depth_error(pred, gt, camera_centres)
    lateral = wrist_error - (wrist_error * ray).sum(dim=-1, keepdim=True) * ray

    def mean(values: Tensor) -> float:
        return float(masked_mean(values, valid))

    return PlacementErrors(
        mpjpe_mm=mean(joint_errors_mm(pred, gt)),
        ra_mpjpe_mm=mean(joint_errors_mm(root_aligned(pred), root_aligned(gt))),
        wrist_mm=mean(wrist_error.norm(dim=-1) * M_TO_MM),
        depth_mm=mean(depth * M_TO_MM),
        abs_depth_mm=mean(depth.abs() * M_TO_MM),
        lateral_mm=mean(lateral.norm(dim=-1) * M_TO_MM),
        size_ratio=mean(hand_size(pred) / hand_size(gt).clamp(min=1e-9)),
    )


def depth_error_spread_mm(
    pred: Float[Tensor, "frames 21 3"],
    gt: Float[Tensor, "frames 21 3"],
    camera_centres: Float[Tensor, "frames 3"],
    valid: Bool[Tensor, "frames"],
) -> tuple[float, float]:
    """How one hand's depth error varies along its track: its standard deviation over the valid
    frames, and the part of it that changes from one frame to the next (the standard deviation of
    its differences over consecutive valid frames, over sqrt 2: white noise's own standard deviation).
    A small second figure beside a large first one is an error that follows the pose or the scene
    slowly, which smoothing over time cannot remove. NaN with fewer than three valid frames or
    fewer than two pairs of consecutive valid frames."""
    error = wrist_depth_error(pred, gt, camera_centres) * M_TO_MM
    both = valid[1:] & valid[:-1]
    if int(valid.sum()) < 3 or int(both.sum()) < 2:
        return float("nan"), float("nan")
    steps = (error[1:] - error[:-1])[both]
    return float(error[valid].std()), float(steps.std() / 2**0.5)


def scaled_to_size(
    joints: Float[Tensor, "*b 21 3"], camera_centres: Float[Tensor, "*b 3"], size: float
) -> Float[Tensor, "*b 21 3"]:
    """Each hand scaled about its camera centre to ``size`` (metres of summed bone length): the
    same image, the distance changed by the same factor as the size."""
    k = size / hand_size(joints).clamp(min=1e-9)
    return camera_centres[..., None, :] + (joints - camera_centres[..., None, :]) * k[..., None, None]


def size_ambiguity_floor_mm(
    gt: Float[Tensor, "*b 21 3"],
    camera_centres: Float[Tensor, "*b 3"],
    typical_size: float,
    valid: Bool[Tensor, "*b"] | None = None,
) -> float:
    """MPJPE of a single-frame predictor right in everything but the size: each true hand scaled
    about its camera centre to ``typical_size`` (:func:`scaled_to_size`), against the truth."""
    return float(masked_mean(joint_errors_mm(scaled_to_size(gt, camera_centres, typical_size), gt), valid))
