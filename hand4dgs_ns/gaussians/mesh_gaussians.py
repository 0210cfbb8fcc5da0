"""Gaussian attributes from a posed mesh: positions, rotations and interpolated embeddings.

Pure, differentiable functions batched over leading dims. A Gaussian's rotation is the
frame of its face: local x = the face's first edge, local z = the face normal, so a scale
that is small in z makes the Gaussian a flat disc lying in the surface. Quaternions are wxyz.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from hand4dgs_ns.gaussians.layout import MeshGaussianLayout
from hand4dgs_ns.geometry.rotations import matrix_to_quaternion


def gather_rows(attr: Float[Tensor, "*b V C"], index: Int[Tensor, "..."]) -> Float[Tensor, "*b ... C"]:
    """``attr[..., index, :]`` for any shape of ``index``.

    ``index_select``'s backward adds into the gradient with atomics, while advanced indexing's
    backward sorts the indices first so that it can accumulate deterministically; on a GPU that
    sort made these gathers several times slower in a training step.
    """
    rows = attr.index_select(-2, index.reshape(-1))
    return rows.reshape(*attr.shape[:-2], *index.shape, attr.shape[-1])


def interpolate_vertex_attributes(
    attr: Float[Tensor, "*b V C"], faces: Int[Tensor, "F 3"], layout: MeshGaussianLayout
) -> Float[Tensor, "*b G C"]:
    """Barycentric interpolation of any per-vertex attribute to the Gaussians of ``layout``."""
    corner_ids = faces[layout.face_ids]  # (G, 3)
    corners = gather_rows(attr, corner_ids)  # (*b, G, 3, C)
    weights = layout.barycentrics.to(dtype=attr.dtype, device=attr.device)
    # A weighted sum over the 3 corners; einsum would lower this to a batched matmul of
    # G tiny 3-vectors, which is far slower on a GPU than one elementwise pass.
    return (corners * weights[:, :, None]).sum(dim=-2)


def gaussian_means(
    verts: Float[Tensor, "*b V 3"], faces: Int[Tensor, "F 3"], layout: MeshGaussianLayout
) -> Float[Tensor, "*b G 3"]:
    """Gaussian centres: barycentric interpolation of the posed vertices."""
    return interpolate_vertex_attributes(verts, faces, layout)


def vertex_normals(verts: Float[Tensor, "*b V 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "*b V 3"]:
    """Area-weighted unit vertex normals; outward for faces wound counter-clockwise seen from outside."""
    v0, v1, v2 = gather_rows(verts, faces).unbind(dim=-2)
    face_n = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = twice the area: the weighting
    normals = torch.zeros_like(verts).index_add_(-2, faces.reshape(-1), face_n.repeat_interleave(3, dim=-2))
    return F.normalize(normals, dim=-1)


def face_frames(verts: Float[Tensor, "*b V 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "*b F 3 3"]:
    """Orthonormal frame per face; columns are tangent, bitangent, normal.

    tangent = normalised first edge (v1 - v0), normal = normalised (v1 - v0) x (v2 - v0)
    (right-handed with the face's vertex order), bitangent = normal x tangent.
    """
    v0, v1, v2 = gather_rows(verts, faces).unbind(dim=-2)
    e1 = v1 - v0
    tangent = F.normalize(e1, dim=-1)
    normal = F.normalize(torch.cross(e1, v2 - v0, dim=-1), dim=-1)
    bitangent = torch.cross(normal, tangent, dim=-1)
    return torch.stack([tangent, bitangent, normal], dim=-1)


def gaussian_quats(
    verts: Float[Tensor, "*b V 3"], faces: Int[Tensor, "F 3"], layout: MeshGaussianLayout
) -> Float[Tensor, "*b G 4"]:
    """wxyz rotation of every Gaussian: its face's frame, so local z is the face normal."""
    quats = matrix_to_quaternion(face_frames(verts, faces))  # one per face, then shared
    return gather_rows(quats, layout.face_ids)
