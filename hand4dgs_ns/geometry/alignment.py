"""Rigid alignment of point sets (Kabsch) and rotation averaging, pure functions."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def project_to_rotation(m: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 3 3"]:
    """The rotation nearest to ``m`` in Frobenius norm (SVD, determinant fixed to +1)."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.sign(torch.det(u @ vh))
    fix = torch.ones_like(u[..., 0, :])
    fix[..., -1] = d
    return u @ torch.diag_embed(fix) @ vh


def kabsch_rotation(source: Float[Tensor, "*b n 3"], target: Float[Tensor, "*b n 3"]) -> Float[Tensor, "*b 3 3"]:
    """Rotation R minimising ``sum ||R (s - mean s) - (t - mean t)||^2`` over matching points."""
    s = source - source.mean(dim=-2, keepdim=True)
    t = target - target.mean(dim=-2, keepdim=True)
    return project_to_rotation(t.transpose(-1, -2) @ s)


def mean_rotation(rotations: Float[Tensor, "n 3 3"], weights: Bool[Tensor, "n"] | None = None) -> Float[Tensor, "3 3"]:
    """Chordal L2 mean of rotations: the rotation nearest to their (weighted) sum."""
    w = torch.ones(rotations.shape[0], dtype=rotations.dtype) if weights is None else weights.to(rotations.dtype)
    return project_to_rotation((rotations * w[:, None, None]).sum(dim=0))
