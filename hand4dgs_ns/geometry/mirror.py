"""The left-right mirror of the camera frame, ``M = diag(-1, 1, 1)`` (x negated; OpenCV axes).

Left hands are cropped mirrored, so a left hand looks like a right hand in its crop. A point
``p`` of the mirrored scene is ``M p``, a rotation ``M R M``, and a point that projects to pixel
``u`` projects to ``2 c_x - u`` (the image mirrored about the principal point). Pure functions.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hand4dgs_ns.constants import constant

MIRROR = (-1.0, 1.0, 1.0)
"""Diagonal of ``M``."""
_ROTATION_SIGNS = tuple(tuple(a * b for b in MIRROR) for a in MIRROR)
"""``m_i m_j``: the signs ``M R M`` gives the entries of ``R``."""
CROPS_MIRRORED = (True, False)
"""Per hand slot (left, right): whether its crop is mirrored."""


def mirror_points(points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
    """``M p``: x negated."""
    return points * constant(MIRROR, points.device, points.dtype)  # no host copy: runs inside CUDA graphs


def mirror_rotations(rotations: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 3 3"]:
    """``M R M``: the rotation of a mirrored hand.

    Entry ``(i, j)`` is multiplied by ``m_i m_j``; on axis-angle this negates ``y`` and ``z``.
    """
    return rotations * constant(_ROTATION_SIGNS, rotations.device, rotations.dtype)


def mirror_boxes(bbox_xyxy: Float[Tensor, "*b 4"], cx: Float[Tensor, "*b"]) -> Float[Tensor, "*b 4"]:
    """The xyxy pixel box of the mirrored scene: x mirrored about the principal point ``cx``."""
    x0, y0, x1, y1 = bbox_xyxy.unbind(-1)
    return torch.stack((2 * cx - x1, y0, 2 * cx - x0, y1), dim=-1)


def mirror_normalized_boxes(box: Float[Tensor, "*b 4"]) -> Float[Tensor, "*b 4"]:
    """A ``(cx / W, cy / H, w / W, h / H)`` box of the mirrored image (mirrored about the image centre)."""
    return torch.stack((1.0 - box[..., 0], box[..., 1], box[..., 2], box[..., 3]), dim=-1)

