"""Synthetic hand-like Gaussian scenes, for the renderer benchmark and backend comparisons.

Two meshes (two hand templates, or two flat ellipsoids of hand size and vertex count when
none are given) are turned into mesh-guided Gaussians with :mod:`hand4dgs_ns.gaussians`,
placed side by side 0.33 m in front of the camera palm-on, and moved by a small random rigid
motion per frame so that every camera sees its own Gaussians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from hand4dgs_ns.gaussians import gaussian_means, gaussian_quats, make_layout
from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix

Mesh = tuple[Float[Tensor, "V 3"], Int[Tensor, "F 3"]]


@dataclass(frozen=True)
class GaussianScene:
    """Inputs of :func:`hand4dgs_ns.render.rasterize` for B frames of N Gaussians."""

    means: Float[Tensor, "B N 3"]
    """Centres, world frame (metres)."""
    quats: Float[Tensor, "B N 4"]
    """wxyz rotations."""
    scales: Float[Tensor, "B N 3"]
    """Standard deviations along the local axes; z (the face normal) is thin."""
    opacities: Float[Tensor, "B N"]
    """In (0, 1)."""
    colors: Float[Tensor, "B N 3"]
    """Skin-like RGB with per-Gaussian variation."""
    viewmats: Float[Tensor, "B 4 4"]
    """World-to-camera (identity: the world is the camera frame)."""
    Ks: Float[Tensor, "B 3 3"]
    """Pinhole intrinsics, 60 degrees horizontal field of view."""
    backgrounds: Float[Tensor, "B 3"]
    """Black or white per frame, as in training."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""

    def kwargs(self) -> dict:
        """Keyword arguments for ``rasterize`` (the tensors themselves, not copies)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def ellipsoid_mesh(semi_axes: tuple[float, float, float], n_lat: int = 41, n_lon: int = 40) -> Mesh:
    """Latitude-longitude ellipsoid centred at the origin; the default has 1602 vertices, 3120 faces."""
    theta = torch.linspace(0.0, math.pi, n_lat)[1:-1]
    phi = torch.arange(n_lon) * (2.0 * math.pi / n_lon)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], dim=-1).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0.0, 0.0, 1.0]]), ring, torch.tensor([[0.0, 0.0, -1.0]])])
    verts = verts * torch.tensor(semi_axes)
    rings = n_lat - 2
    idx = torch.arange(rings * n_lon).reshape(rings, n_lon) + 1
    nxt = torch.roll(idx, -1, dims=1)
    top = torch.stack([torch.zeros(n_lon, dtype=torch.long), idx[0], nxt[0]], dim=-1)
    bottom_pole = rings * n_lon + 1
    bottom = torch.stack([torch.full((n_lon,), bottom_pole), nxt[-1], idx[-1]], dim=-1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)]).reshape(-1, 3)
    return verts, torch.cat([top, quads, bottom])


def _palm_on(verts: Float[Tensor, "V 3"]) -> Float[Tensor, "V 3"]:
    """Centre a mesh and rotate it so its longest extent is image-vertical and its thinnest is depth."""
    centred = verts - verts.mean(0)
    _, _, axes = torch.linalg.svd(centred, full_matrices=False)  # rows: principal directions
    rot = torch.stack([axes[1], axes[0], torch.linalg.cross(axes[1], axes[0])])  # -> x, y, z
    return centred @ rot.T


def hand_like_scene(
    batch: int = 1,
    width: int = 160,
    height: int = 120,
    per_face: int = 1,
    meshes: tuple[Mesh, Mesh] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> GaussianScene:
    """Two hands (or hand-sized ellipsoids) side by side, filling a good part of the frame."""
    gen = torch.Generator().manual_seed(seed)
    if meshes is None:
        meshes = (ellipsoid_mesh((0.045, 0.09, 0.015)), ellipsoid_mesh((0.045, 0.09, 0.015)))
    means, quats, scales = [], [], []
    for side, (verts, faces) in zip((-1.0, 1.0), meshes):
        faces = faces.long()
        layout = make_layout(faces, verts.shape[0], per_face=per_face, seed=seed)
        rest = _palm_on(verts.double()) + torch.tensor([side * 0.08, 0.0, 0.33], dtype=torch.float64)
        tilt = axis_angle_to_matrix(0.15 * torch.randn(batch, 3, generator=gen, dtype=torch.float64))
        shift = 0.01 * torch.randn(batch, 1, 3, generator=gen, dtype=torch.float64)
        pivot = rest.mean(0)
        posed = (rest - pivot) @ tilt.transpose(-1, -2) + pivot + shift  # (B, V, 3)
        means.append(gaussian_means(posed, faces, layout))
        quats.append(gaussian_quats(posed, faces, layout))
        # Gaussians as wide as their share of their face (meshes are denser on the fingers).
        v0, v1, v2 = (rest[faces[:, k]] for k in range(3))
        area = 0.5 * torch.linalg.cross(v1 - v0, v2 - v0).norm(dim=-1)[layout.face_ids]
        spacing = torch.sqrt(area / (per_face + 0.5))
        scale = torch.tensor([0.6, 0.6, 0.1], dtype=torch.float64) * spacing[:, None]
        scales.append(scale.expand(batch, layout.num_gaussians, 3))
    means_t, quats_t, scales_t = (torch.cat(x, dim=1) for x in (means, quats, scales))
    n = means_t.shape[1]
    skin = torch.tensor([0.85, 0.64, 0.52], dtype=torch.float64)
    colors = (skin + 0.08 * torch.randn(batch, n, 3, generator=gen, dtype=torch.float64)).clamp(0, 1)
    opacities = 0.9 + 0.09 * torch.rand(batch, n, generator=gen, dtype=torch.float64)
    focal = 0.5 * width / math.tan(math.radians(30.0))
    k = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    backgrounds = (torch.rand(batch, 1, generator=gen) < 0.5).double().expand(batch, 3)
    return GaussianScene(
        means=means_t.to(device, dtype),
        quats=quats_t.to(device, dtype),
        scales=scales_t.to(device, dtype).contiguous(),
        opacities=opacities.to(device, dtype),
        colors=colors.to(device, dtype),
        viewmats=torch.eye(4, dtype=dtype, device=device).expand(batch, 4, 4).contiguous(),
        Ks=k.to(device, dtype).expand(batch, 3, 3).contiguous(),
        backgrounds=backgrounds.to(device, dtype).contiguous(),
        width=width,
        height=height,
    )
