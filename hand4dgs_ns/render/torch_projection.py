"""EWA projection of 3D Gaussians to image-plane Gaussians, in pure torch.

Follows ``gsplat/cuda/_torch_impl.py`` (``_fully_fused_projection`` with ``_persp_proj``) and
the CUDA kernel it mirrors, so the reference renderer sees the same 2D Gaussians as gsplat:
covariance R S S^T R^T from (quat, scale); camera-space covariance; the perspective
Jacobian evaluated at the centre clamped to 1.3x the field of view; +EPS2D on the diagonal;
a 3-sigma radius from the largest eigenvalue; culling by near/far plane and image bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.geometry.cameras import project_points, transform_points
from hand4dgs_ns.geometry.rotations import quaternion_to_matrix
from hand4dgs_ns.render.output import EPS2D, FAR_PLANE, NEAR_PLANE


@dataclass(frozen=True)
class ProjectedGaussians:
    """Image-plane Gaussians for B cameras x N Gaussians (entries with ``valid`` False are culled)."""

    means2d: Float[Tensor, "B N 2"]
    """Projected centres in pixels."""
    cov2d: Float[Tensor, "B N 3"]
    """Low-pass-filtered 2D covariance, upper triangle (xx, xy, yy), px^2."""
    conics: Float[Tensor, "B N 3"]
    """Inverse of ``cov2d``, upper triangle (xx, xy, yy), as gsplat stores it."""
    depths: Float[Tensor, "B N"]
    """Camera-space z of the centres."""
    radii: Float[Tensor, "B N"]
    """gsplat's integer 3-sigma radius in pixels (no gradient); 0 where culled."""
    valid: Bool[Tensor, "B N"]
    """In front of the near plane, non-degenerate, and overlapping the image."""


def project_gaussians(
    means: Float[Tensor, "B N 3"],
    quats: Float[Tensor, "B N 4"],
    scales: Float[Tensor, "B N 3"],
    viewmats: Float[Tensor, "B 4 4"],
    Ks: Float[Tensor, "B 3 3"],
    width: int,
    height: int,
) -> ProjectedGaussians:
    """Project each camera's own Gaussians with that camera (differentiable except radii/valid)."""
    rot = quaternion_to_matrix(quats)
    m = rot * scales[..., None, :]
    cov_w = m @ m.transpose(-1, -2)
    view_rot = viewmats[:, None, :3, :3]
    means_c = transform_points(viewmats, means)
    cov_c = view_rot @ cov_w @ view_rot.transpose(-1, -2)

    x, y, z = means_c.unbind(-1)
    in_depth = (z >= NEAR_PLANE) & (z <= FAR_PLANE)
    # Culled centres get z = 1 so that no inf/NaN enters the graph (0 * inf in backward).
    z = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z * torch.clamp(x / z, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y / z, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(*z.shape, 2, 3)
    cov2d = jac @ cov_c @ jac.transpose(-1, -2)
    means2d = project_points(Ks[:, None], torch.stack([x, y, z], dim=-1)[..., None, :]).squeeze(-2)

    a = cov2d[..., 0, 0] + EPS2D
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + EPS2D
    det = a * c - b * b
    positive = det > 0
    det = torch.where(positive, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        half_trace = 0.5 * (a + c)
        v1 = half_trace + torch.sqrt(torch.clamp(half_trace * half_trace - det, min=0.01))
        radii = torch.ceil(3.0 * torch.sqrt(v1))
        u, v = means2d[..., 0], means2d[..., 1]
        inside = (u + radii > 0) & (u - radii < width) & (v + radii > 0) & (v - radii < height)
        valid = in_depth & positive & inside
        radii = torch.where(valid, radii, torch.zeros_like(radii))

    return ProjectedGaussians(
        means2d=means2d,
        cov2d=torch.stack([a, b, c], dim=-1),
        conics=conics,
        depths=means_c[..., 2],
        radii=radii,
        valid=valid,
    )
