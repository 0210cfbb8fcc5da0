"""Where the mesh-guided Gaussians sit on a mesh: one (face, barycentric) pair per Gaussian.

The layout is fixed per model (drawn once from a seed) and shared by every frame, so a
Gaussian keeps its place on the surface while the mesh moves. Each vertex gets one
Gaussian, written as a one-hot barycentric on an incident face, so that every Gaussian,
vertex or face sample, is described the same way and one interpolation serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class MeshGaussianLayout:
    """Fixed placement of G Gaussians on a triangle mesh.

    The first ``num_vertices`` entries are the per-vertex Gaussians (entry ``v`` sits exactly
    on vertex ``v``); then ``per_face`` samples for face 0, ``per_face`` for face 1, and so on.
    """

    face_ids: Int[Tensor, "G"]
    """Index of the face each Gaussian lies on (long)."""
    barycentrics: Float[Tensor, "G 3"]
    """Barycentric coordinates in that face, weights of ``faces[face_id, 0..2]``; non-negative, summing to 1."""

    @property
    def num_gaussians(self) -> int:
        """G, the number of Gaussians."""
        return int(self.face_ids.shape[0])

    def to(self, device: torch.device | str | None = None) -> MeshGaussianLayout:
        """The same layout with its tensors on ``device``."""
        return MeshGaussianLayout(self.face_ids.to(device), self.barycentrics.to(device))


def make_layout(
    faces: Int[Tensor, "F 3"], num_vertices: int, per_face: int = 10, seed: int = 0
) -> MeshGaussianLayout:
    """One Gaussian per vertex plus ``per_face`` uniform random samples in every face.

    The face samples are uniform over each triangle (the square-root trick: with u, v
    uniform in [0, 1), ``(1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)``), drawn from a CPU
    ``torch.Generator`` seeded with ``seed`` so that the layout is the same on every device.
    Each vertex Gaussian uses the lowest-numbered face that contains the vertex.
    """
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"make_layout: faces must have shape (F, 3), got {tuple(faces.shape)}.")
    if per_face < 0:
        raise ValueError(f"make_layout: per_face must be >= 0, got {per_face}.")
    device = faces.device
    faces = faces.long().cpu()
    num_faces = faces.shape[0]
    if faces.numel() and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ValueError(f"make_layout: face indices must lie in [0, {num_vertices}), the mesh's vertex range.")

    flat = faces.reshape(-1)
    corner = torch.full((num_vertices,), faces.numel(), dtype=torch.long)
    corner = corner.scatter_reduce(0, flat, torch.arange(flat.numel()), reduce="amin")
    unused = (corner == faces.numel()).nonzero().flatten()
    if unused.numel():
        raise ValueError(
            f"make_layout: vertex {int(unused[0])} belongs to no face, so it cannot carry a Gaussian; "
            "remove unused vertices from the mesh first."
        )
    vertex_face_ids = corner // 3
    vertex_bary = torch.nn.functional.one_hot(corner % 3, 3).float()

    generator = torch.Generator().manual_seed(seed)
    uv = torch.rand(num_faces * per_face, 2, generator=generator)
    s = uv[:, 0].sqrt()
    v = uv[:, 1]
    face_bary = torch.stack([1.0 - s, s * (1.0 - v), s * v], dim=-1)
    face_ids = torch.arange(num_faces).repeat_interleave(per_face)

    return MeshGaussianLayout(
        face_ids=torch.cat([vertex_face_ids, face_ids]).to(device),
        barycentrics=torch.cat([vertex_bary, face_bary]).to(device),
    )
