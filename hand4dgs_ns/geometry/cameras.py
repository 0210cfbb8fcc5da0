"""Camera conventions: the one OpenCV <-> OpenGL conversion and pinhole projection.

Inside the package every camera uses OpenCV axes (x right, y down, z forward). nerfstudio's
``Cameras`` use OpenGL axes (x right, y up, z backward); :func:`opencv_to_opengl_c2w` is
applied where ``Cameras`` are built and nowhere else.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

def opencv_to_opengl_c2w(c2w: Float[Tensor, "*b 4 4"]) -> Float[Tensor, "*b 4 4"]:
    """Camera-to-world with OpenCV camera axes -> the same camera with OpenGL axes."""
    # c2w @ diag(1, -1, -1, 1): negate the y and z columns (no constant tensor, so no host-to-GPU copy).
    return torch.cat([c2w[..., :1], -c2w[..., 1:3], c2w[..., 3:]], dim=-1)


def opengl_to_opencv_c2w(c2w: Float[Tensor, "*b 4 4"]) -> Float[Tensor, "*b 4 4"]:
    """Inverse of :func:`opencv_to_opengl_c2w` (the flip is its own inverse)."""
    return opencv_to_opengl_c2w(c2w)


def invert_rigid(t: Float[Tensor, "*b 4 4"]) -> Float[Tensor, "*b 4 4"]:
    """Inverse of a rigid 4x4 transform without a general matrix inverse."""
    r = t[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(t)
    out[..., :3, :3] = r
    out[..., :3, 3] = -(r @ t[..., :3, 3:4]).squeeze(-1)
    out[..., 3, 3] = 1.0
    return out


def transform_points(t: Float[Tensor, "*b 4 4"], p: Float[Tensor, "*b n 3"]) -> Float[Tensor, "*b n 3"]:
    """Apply a 4x4 rigid transform to points (column-vector convention)."""
    return p @ t[..., :3, :3].transpose(-1, -2) + t[..., None, :3, 3]


def project_points(K: Float[Tensor, "*b 3 3"], p_cam: Float[Tensor, "*b n 3"]) -> Float[Tensor, "*b n 2"]:
    """Pinhole projection of camera-frame points (OpenCV axes) to pixel coordinates."""
    uvw = p_cam @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3].clamp(min=1e-9)


def box_prior(
    box_xyxy: Float[Tensor, "*b 4"], K: Float[Tensor, "*b 3 3"], hand_extent_m: float
) -> tuple[Float[Tensor, "*b 2"], Float[Tensor, "*b"]]:
    """Where a hand box puts a hand: the box centre's ray as ``(x/z, y/z)`` and the depth at which a
    hand of ``hand_extent_m`` metres fills the box's longer side (boxes clamped to 4 pixels)."""
    centre = 0.5 * (box_xyxy[..., :2] + box_xyxy[..., 2:])
    size = (box_xyxy[..., 2:] - box_xyxy[..., :2]).amax(dim=-1).clamp(min=4.0)
    focal_xy = torch.stack([K[..., 0, 0], K[..., 1, 1]], dim=-1)
    return (centre - K[..., :2, 2]) / focal_xy, focal_xy.mean(dim=-1) * hand_extent_m / size


def _clip_to_image(xy: Float[Tensor, "*b 2"], image_wh: Float[Tensor, "*b 2"]) -> Float[Tensor, "*b 2"]:
    return torch.minimum(torch.maximum(xy, torch.zeros_like(xy)), image_wh)


def box_around(points_image: Float[Tensor, "*b n 2"]) -> Float[Tensor, "*b 4"]:
    """The xyxy pixel box around image points."""
    return torch.cat([points_image.amin(dim=-2), points_image.amax(dim=-2)], dim=-1)


def box_centre_offset(
    box_xyxy: Float[Tensor, "*b 4"], target_xyxy: Float[Tensor, "*b 4"], image_wh: Float[Tensor, "*b 2"]
) -> Float[Tensor, "*b 2"]:
    """Pixels from ``target_xyxy``'s centre to ``box_xyxy``'s, both boxes clipped to the image first
    (so a hand that leaves the frame compares as its box does)."""
    lo, hi = _clip_to_image(box_xyxy[..., :2], image_wh), _clip_to_image(box_xyxy[..., 2:], image_wh)
    target_lo, target_hi = _clip_to_image(target_xyxy[..., :2], image_wh), _clip_to_image(target_xyxy[..., 2:], image_wh)
    return 0.5 * ((lo + hi) - (target_lo + target_hi))


def centre_on_box(
    points_cam: Float[Tensor, "b n 3"], box_xyxy: Float[Tensor, "b 4"], K: Float[Tensor, "b 3 3"],
    image_wh: Float[Tensor, "b 2"], iterations: int = 2,
) -> Float[Tensor, "b 3"]:
    """The camera-frame shift, across the view at the points' mean depth, that centres the box around
    the projected points on a hand box (:func:`box_centre_offset` of :func:`box_around`). Each
    iteration shifts by the remaining offset: points at one depth settle in one step, a hand's
    depth relief in the next. A box that the image's border cuts follows a shift at half the rate
    (only its inner edge moves), so such a hand closes half of its offset per iteration; dividing
    the step by that rate (a Newton step) settles it at once, but networks trained with it placed
    the held-out hands worse (MPJPE 71 against 18 mm on the GPU, +5.7 and +0.4 mm at CPU size;
    docs/benchmarks.md, "The centring's second version in training"), so the steps stay plain.
    Rows whose box is empty (all zeros: no hand) get no shift."""
    shift = torch.zeros_like(points_cam[:, 0])
    depth = points_cam[..., 2].mean(dim=1, keepdim=True)
    focal_xy = torch.stack([K[:, 0, 0], K[:, 1, 1]], dim=-1)
    for _ in range(iterations):
        offset = box_centre_offset(box_around(project_points(K, points_cam + shift[:, None])), box_xyxy, image_wh)
        shift = shift - torch.cat([offset / focal_xy * depth, torch.zeros_like(depth)], dim=-1)
    has_box = ((box_xyxy[:, 2:] - box_xyxy[:, :2]) > 0).all(dim=-1, keepdim=True)
    return shift * has_box.to(shift.dtype)
