"""Hand reconstruction metrics (docs/formats.md section 6), pure functions.

Pose metrics take joints in metres (any frame, as long as prediction and ground truth share
it) in OpenPose order and return millimetres. Image metrics use torchmetrics on each hand's
box crop.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from hand4dgs_ns.constants import constant
from hand4dgs_ns.data.sequence_format import hand_pixels, occluder_pixels

M_TO_MM = 1000.0
WRIST = 0
OPENPOSE_BONES = tuple((0 if k == 0 else base + k - 1, base + k) for base in (1, 5, 9, 13, 17) for k in range(4))
"""The 20 bones of the OpenPose hand as (parent, child) joints: each finger from the wrist out."""


def bone_lengths(joints: Float[Tensor, "*b 21 3"]) -> Float[Tensor, "*b 20"]:
    """Lengths (m) of the 20 OpenPose hand bones, in :data:`OPENPOSE_BONES` order."""
    parent, child = (constant(ends, joints.device, torch.long) for ends in zip(*OPENPOSE_BONES))
    return (joints.index_select(-2, child) - joints.index_select(-2, parent)).norm(dim=-1)


def joint_errors_mm(pred: Float[Tensor, "*b 21 3"], gt: Float[Tensor, "*b 21 3"]) -> Float[Tensor, "*b"]:
    """Per-hand mean joint distance in mm (MPJPE before averaging over hands and frames)."""
    return (pred - gt).norm(dim=-1).mean(dim=-1) * M_TO_MM


def root_aligned(joints: Float[Tensor, "*b 21 3"]) -> Float[Tensor, "*b 21 3"]:
    """Joints relative to the wrist."""
    return joints - joints[..., WRIST : WRIST + 1, :]


def mpjpe_mm(pred: Float[Tensor, "*b 21 3"], gt: Float[Tensor, "*b 21 3"], valid: Bool[Tensor, "*b"] | None = None) -> Tensor:
    """MPJPE in mm over the valid hands (NaN when none is valid)."""
    return masked_mean(joint_errors_mm(pred, gt), valid)


def ra_mpjpe_mm(pred: Float[Tensor, "*b 21 3"], gt: Float[Tensor, "*b 21 3"], valid: Bool[Tensor, "*b"] | None = None) -> Tensor:
    """Root(wrist)-aligned MPJPE in mm."""
    return masked_mean(joint_errors_mm(root_aligned(pred), root_aligned(gt)), valid)


def acceleration_error_mm(
    pred: Float[Tensor, "frames 21 3"], gt: Float[Tensor, "frames 21 3"], valid: Bool[Tensor, "frames"] | None = None
) -> Tensor:
    """Acc Err in mm/frame^2: ``a_t = X_{t-1} - 2 X_t + X_{t+1}`` on wrist-aligned joints.

    Averaged over joints and over frames whose two neighbours and itself are valid.
    """
    if pred.shape[0] < 3:
        return torch.tensor(float("nan"))
    def accel(x):
        x = root_aligned(x)
        return x[:-2] - 2 * x[1:-1] + x[2:]

    err = (accel(pred) - accel(gt)).norm(dim=-1).mean(dim=-1) * M_TO_MM
    ok = None
    if valid is not None:
        ok = valid[:-2] & valid[1:-1] & valid[2:]
    return masked_mean(err, ok)


def crop_image_metrics(
    pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], boxes: Float[Tensor, "n 4"], min_size: int = 8
) -> tuple[list[float], list[float]]:
    """PSNR and SSIM on each box crop (xyxy pixels, clipped to the image).

    Boxes smaller than ``min_size`` pixels on a side are skipped (SSIM's 11x11 window needs
    room; a hand that small is not "sufficiently visible").
    """
    height, width = pred.shape[:2]
    psnrs, ssims = [], []
    for box in boxes.tolist():
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(round(box[2])), width), min(int(round(box[3])), height)
        if x1 - x0 < min_size or y1 - y0 < min_size:
            continue
        p = pred[y0:y1, x0:x1].permute(2, 0, 1)[None].clamp(0, 1)
        g = gt[y0:y1, x0:x1].permute(2, 0, 1)[None]
        psnrs.append(float(peak_signal_noise_ratio(p, g, data_range=1.0)))
        kernel = min(11, (min(x1 - x0, y1 - y0) // 2) * 2 - 1)
        ssims.append(float(structural_similarity_index_measure(p, g, data_range=1.0, kernel_size=kernel)))
    return psnrs, ssims


def hand_crop_metrics(
    render: Float[Tensor, "H W 3"], image: Float[Tensor, "H W 3"], labels: Tensor, boxes: Float[Tensor, "n 4"], background: float = 0.0
) -> tuple[list[float], list[float]]:
    """PSNR and SSIM of a render of the hands on each hand box, against the frame's hands (mask
    labels 1 and 2) over the render's ``background``. Pixels an occluder covers (label 3) are left
    out: there the render counts as right, since nobody knows what the hand looks like behind it."""
    target = hand_target(image, labels, background)
    render = torch.where(occluder_pixels(labels)[..., None], target, render)
    return crop_image_metrics(render, target, boxes)


def hand_target(image: Float[Tensor, "H W 3"], labels: Tensor, background: float = 0.0) -> Float[Tensor, "H W 3"]:
    """What a perfect render of the hands shows: the frame's hands (mask labels 1 and 2) over ``background``."""
    hand = hand_pixels(labels)[..., None].to(image.dtype)
    return image * hand + background * (1 - hand)


def square_boxes(boxes: Float[Tensor, "n 4"], scale: float = 2.0) -> Float[Tensor, "n 4"]:
    """HaMeR-style crops: squares of ``scale`` times each box's longer side around its centre
    (xyxy pixels; the crop metrics clip them to the image)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) * scale / 2
    return torch.cat([centre - half, centre + half], dim=1)


def mask_boxes(labels: Int[Tensor, "H W"], hand_labels: tuple[int, ...] = (1, 2)) -> Float[Tensor, "n 4"]:
    """Bounding boxes (xyxy pixels, exclusive max) of each hand label present in a mask, left first."""
    boxes = []
    for label in hand_labels:
        ys, xs = torch.nonzero(labels == label, as_tuple=True)
        if len(xs):
            boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float())
    return torch.stack(boxes) if boxes else torch.zeros(0, 4)


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over ``mask`` (NaN when empty); a masked sum, so no GPU-to-host wait. Values outside
    the mask are never read, so a NaN there (the format allows any value in an invalid slot) does
    not reach the mean."""
    if mask is None:
        return values.mean() if values.numel() else values.new_tensor(float("nan"))
    mask = mask.bool().expand_as(values)
    total = mask.to(values.dtype).sum()
    mean = torch.where(mask, values, torch.zeros_like(values)).sum() / total.clamp(min=1.0)
    return torch.where(total > 0, mean, torch.full_like(mean, float("nan")))


def sequence_pose_errors(joints: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Per-sequence errors over both hands: mean MPJPE / RA-MPJPE (mm), Acc Err (mm/frame^2)."""
    err = joint_errors_mm(joints, gt)[valid]
    ra = joint_errors_mm(root_aligned(joints), root_aligned(gt))[valid]
    acc = [acceleration_error_mm(joints[:, h], gt[:, h], valid[:, h]) for h in range(2)]
    acc = [float(a) for a in acc if not math.isnan(float(a))]
    return {
        "mpjpe_mm": float(err.mean()) if err.numel() else math.nan,
        "ra_mpjpe_mm": float(ra.mean()) if ra.numel() else math.nan,
        "acc_err_mm": sum(acc) / len(acc) if acc else math.nan,
    }
