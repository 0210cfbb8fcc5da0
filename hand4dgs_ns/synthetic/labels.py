"""Per-frame hand boxes and visibility flags computed from the ground-truth meshes and the mask."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points

_NEAR = 0.01


def hand_boxes(
    verts_world: Float[Tensor, "F 2 V 3"],
    c2w: Float[Tensor, "F 4 4"],
    K: Float[Tensor, "F 3 3"],
    width: int,
    height: int,
    margin: float = 0.05,
) -> Float[Tensor, "F 2 4"]:
    """xyxy boxes of the projected vertices (in front of the camera), grown by ``margin`` of their
    size plus one pixel on each side and clipped to the image; all zeros for a hand out of view."""
    w2c = invert_rigid(c2w.float())[:, None]
    cam = transform_points(w2c, verts_world.float())
    front = cam[..., 2] > _NEAR
    uv = project_points(K.float()[:, None], cam)
    big = torch.finfo(uv.dtype).max
    lo = torch.where(front[..., None], uv, torch.full_like(uv, big)).amin(dim=2)
    hi = torch.where(front[..., None], uv, torch.full_like(uv, -big)).amax(dim=2)
    grow = margin * (hi - lo).amax(dim=-1, keepdim=True) + 1.0
    lo, hi = lo - grow, hi + grow
    size = torch.tensor([width, height], dtype=uv.dtype)
    lo = torch.minimum(torch.maximum(lo, torch.zeros_like(lo)), size)
    hi = torch.minimum(torch.maximum(hi, torch.zeros_like(hi)), size)
    boxes = torch.cat([lo, hi], dim=-1)
    empty = ~front.any(dim=-1) | (hi <= lo).any(dim=-1)
    return torch.where(empty[..., None], torch.zeros_like(boxes), boxes)


def hand_valid(
    visible_pixels: Float[Tensor, "F 2"],
    boxes: Float[Tensor, "F 2 4"],
    width: int,
    height: int,
    min_pixels_fraction: float = 0.002,
    min_fill: float = 0.1,
    min_side_fraction: float = 0.04,
) -> Bool[Tensor, "F 2"]:
    """A hand is usable when enough of it is visible: at least ``min_pixels_fraction`` of the
    image and ``min_fill`` of its clipped box in mask pixels, and a box side of at least
    ``min_side_fraction`` of the image width on both axes."""
    box_w = boxes[..., 2] - boxes[..., 0]
    box_h = boxes[..., 3] - boxes[..., 1]
    area = box_w * box_h
    enough = visible_pixels >= max(min_pixels_fraction * width * height, 8.0)
    filled = visible_pixels >= min_fill * area
    sized = torch.minimum(box_w, box_h) >= min_side_fraction * width
    return enough & filled & sized
