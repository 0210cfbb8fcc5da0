"""Rotation conversions (pure functions, batched over leading dims, differentiable).

Quaternions are ``wxyz``. Rotation matrices act on column vectors. The 6D representation is
the first two columns of the matrix (Zhou et al., "On the Continuity of Rotation
Representations", CVPR 2019), as PyTorch3D stores it: ``d6 = [R[:, 0], R[:, 1]]`` flattened
column by column. Written here rather than taken from PyTorch3D because PyTorch3D has no
wheels for current torch; the formulas follow ``pytorch3d/transforms/rotation_conversions.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def axis_angle_to_matrix(axis_angle: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3 3"]:
    """Rodrigues' formula, stable at zero angle (Taylor terms below 1e-4 rad)."""
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    # sin(t)/t and (1-cos t)/t^2 with their series near zero.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand(k.shape)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def skew(v: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3 3"]:
    """Cross-product matrix: ``skew(v) @ u == cross(v, u)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def rotation_6d_to_matrix(d6: Float[Tensor, "*b 6"]) -> Float[Tensor, "*b 3 3"]:
    """Gram-Schmidt on two 3-vectors; the result's first two columns span them."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rotation_6d(matrix: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 6"]:
    """Inverse of :func:`rotation_6d_to_matrix` for rotation matrices."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def quaternion_to_matrix(quat: Float[Tensor, "*b 4"]) -> Float[Tensor, "*b 3 3"]:
    """wxyz quaternion (any norm) to rotation matrix."""
    w, x, y, z = F.normalize(quat, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quat.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 4"]:
    """Rotation matrix to unit wxyz quaternion with w >= 0.

    Picks, per matrix, the best-conditioned of the four candidate formulas (as PyTorch3D
    does) so gradients stay finite for every rotation, including 180-degree ones.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    q_abs = torch.sqrt(
        torch.clamp(
            torch.stack(
                [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22],
                dim=-1,
            ),
            min=1e-12,
        )
    )
    m21_12 = m[..., 2, 1] - m[..., 1, 2]
    m02_20 = m[..., 0, 2] - m[..., 2, 0]
    m10_01 = m[..., 1, 0] - m[..., 0, 1]
    m10p01 = m[..., 1, 0] + m[..., 0, 1]
    m02p20 = m[..., 0, 2] + m[..., 2, 0]
    m21p12 = m[..., 2, 1] + m[..., 1, 2]
    candidates = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21_12, m02_20, m10_01], dim=-1),
            torch.stack([m21_12, q_abs[..., 1] ** 2, m10p01, m02p20], dim=-1),
            torch.stack([m02_20, m10p01, q_abs[..., 2] ** 2, m21p12], dim=-1),
            torch.stack([m10_01, m02p20, m21p12, q_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    ) / (2.0 * q_abs[..., None].clamp(min=0.1))
    best = q_abs.argmax(dim=-1)
    quat = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return torch.where(quat[..., :1] < 0, -quat, quat)



def matrix_to_axis_angle(matrix: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 3"]:
    """Rotation matrix to axis-angle (MANO's parameterisation), angle in [0, pi], through the quaternion."""
    quat = matrix_to_quaternion(matrix)
    xyz_norm = quat[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(xyz_norm, quat[..., :1])
    # angle / sin(angle / 2) tends to 2 at the identity; the series keeps it finite there.
    factor = torch.where(xyz_norm > 1e-6, angle / xyz_norm.clamp(min=1e-12), 2.0 + angle.square() / 12.0)
    return quat[..., 1:] * factor
