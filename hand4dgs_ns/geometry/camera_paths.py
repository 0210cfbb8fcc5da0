"""Camera paths around the hands (OpenCV axes, camera-to-world 4x4, metres): an orbit around a
centre, with the egocentric camera as its first view. Pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix


def look_at(eye: Float[Tensor, "*b 3"], target: Float[Tensor, "*b 3"], up: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 4 4"]:
    """Camera-to-world of a camera at ``eye`` looking at ``target``, its image 'up' along ``up``
    (OpenCV axes: x right, y down, z forward). ``up`` must not be parallel to the view direction."""
    z = F.normalize(target - eye, dim=-1)
    x = F.normalize(torch.cross(-up, z, dim=-1), dim=-1)  # y (down) x z (forward) = x (right)
    y = torch.cross(z, x, dim=-1)
    c2w = torch.zeros((*eye.shape[:-1], 4, 4), dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def orbit(
    start_c2w: Float[Tensor, "4 4"], centre: Float[Tensor, "3"], angles: Float[Tensor, "n"], distance: float = 1.0
) -> Float[Tensor, "n 4 4"]:
    """Cameras circling ``centre`` about the start camera's 'up' axis, all looking at ``centre``.

    Angle 0 is the start camera's position (moved ``distance`` times its distance from the
    centre, along the same line); positive angles turn anticlockwise seen from above.
    """
    up = -start_c2w[:3, 1]  # OpenCV: the camera's y axis points down
    offset = (start_c2w[:3, 3] - centre) * distance
    turns = axis_angle_to_matrix(angles[:, None] * up)  # (n, 3, 3)
    eyes = centre + (turns @ offset[:, None])[..., 0]
    return look_at(eyes, centre.expand_as(eyes), up.expand_as(eyes))
