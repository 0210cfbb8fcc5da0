"""A small vectorised z-buffer triangle rasteriser in pure torch (CPU or GPU, not differentiable).

Why hand-written: the synthetic clips need an opaque, shaded mesh render (not Gaussians) on
CPU-only machines. open3d's offscreen renderer fails there (``Failed to load vulkan
library!``), moderngl needs EGL packages from apt, and PyTorch3D has no wheels for current
torch; nvdiffrast needs CUDA. A batched z-buffer over a few thousand small triangles is a
few dozen tensor operations, so it is written here.

Method: every triangle whose three vertices lie in front of the near plane is projected.
Its screen-space barycentrics and inverse depth are affine functions of the pixel position,
so, per row of its bounding box, the run of pixel centres inside it (pixel ``i`` has its
centre at ``i + 0.5``) follows from three linear inequalities, and the inverse depth along
the run from a start value and a step. Every (triangle, pixel) candidate is depth-tested
with one ``scatter_reduce(amin)`` on an int64 key whose high 32 bits are the float32 depth's
bit pattern (monotonic for positive floats) and whose low 32 bits are the triangle index.
The winners' depths are read back from their keys; perspective-correct barycentrics are
computed later, for the winning triangles only and only where a shader asks for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

_EMPTY_KEY = torch.iinfo(torch.int64).max
_LOW32 = (1 << 32) - 1
_EPS = 1e-6  # barycentric tolerance: pixel centres on a shared edge go to both triangles


@dataclass(frozen=True)
class Fragments:
    """The nearest triangle at every covered pixel centre of a batch of images (sparse).

    Barycentrics are computed on request (:meth:`barycentrics`), for all covered pixels or a
    subset, since a shader may need them at only some of the pixels.
    """

    shape: tuple[int, int, int]
    """(B, H, W) of the rendered batch."""
    pixels: Int[Tensor, " P"]
    """Flat indices ``(b * H + y) * W + x`` of the covered pixels, ascending."""
    faces: Int[Tensor, " P"]
    """Index of the visible triangle at each covered pixel."""
    depth: Float[Tensor, " P"]
    """Camera-frame z of the visible surface, metres."""
    screen_triangles: Float[Tensor, "B F 3 2"]
    """Projected triangle corners in pixels (for the barycentrics)."""
    triangle_depths: Float[Tensor, "B F 3"]
    """Camera-frame z of the triangle corners."""

    def indices(self) -> tuple[Tensor, Tensor, Tensor]:
        """(b, y, x) of each covered pixel."""
        _, H, W = self.shape
        return self.pixels // (H * W), (self.pixels // W) % H, self.pixels % W

    def barycentrics(self, subset: Int[Tensor, " Q"] | None = None) -> Float[Tensor, "Q 3"]:
        """Perspective-correct barycentric weights of the pixel centres in their visible triangles,
        for all covered pixels or for ``subset`` (indices into :attr:`pixels`)."""
        pixels = self.pixels if subset is None else self.pixels.index_select(0, subset)
        faces = self.faces if subset is None else self.faces.index_select(0, subset)
        B, F = self.triangle_depths.shape[:2]
        _, H, W = self.shape
        flat = (pixels // (H * W)) * F + faces
        centre = torch.stack([pixels % W, (pixels // W) % H], dim=-1).to(self.screen_triangles.dtype) + 0.5
        a, b, c = self.screen_triangles.reshape(B * F, 3, 2).index_select(0, flat).unbind(dim=-2)
        screen = torch.stack([_edge(b, c, centre), _edge(c, a, centre), _edge(a, b, centre)], dim=-1)
        weighted = screen / self.triangle_depths.reshape(B * F, 3).index_select(0, flat)
        return weighted / weighted.sum(dim=-1, keepdim=True)

    @property
    def face_ids(self) -> Int[Tensor, "B H W"]:
        """Dense map of visible triangle indices, -1 where nothing covers the pixel."""
        out = torch.full((math.prod(self.shape),), -1, dtype=torch.long, device=self.pixels.device)
        out[self.pixels] = self.faces
        return out.view(self.shape)

    @property
    def covered(self) -> Int[Tensor, "B H W"]:
        """Dense bool map of covered pixels."""
        return self.face_ids >= 0

    @property
    def depth_map(self) -> Float[Tensor, "B H W"]:
        """Dense depth map, ``inf`` on background."""
        out = torch.full((math.prod(self.shape),), float("inf"), device=self.pixels.device)
        out[self.pixels] = self.depth
        return out.view(self.shape)


def rasterize_mesh(
    verts_cam: Float[Tensor, "B N 3"],
    faces: Int[Tensor, "F 3"],
    K: Float[Tensor, "B 3 3"],
    width: int,
    height: int,
    near: float = 0.01,
    cull_backfaces: bool = False,
    max_candidates: int = 4_000_000,
) -> Fragments:
    """Rasterise a batch of meshes (one shared topology) seen by pinhole cameras.

    Args:
        verts_cam: vertices in each image's camera frame (OpenCV axes, metres).
        faces: triangle vertex indices, shared by the batch.
        K: pinhole intrinsics per image, in pixels.
        width, height: image size in pixels.
        near: triangles with a vertex closer than this (metres) are dropped, not clipped.
        cull_backfaces: drop triangles whose counter-clockwise side (seen from outside) faces
            away from the camera; only for closed meshes wound that way (halves the work).
        max_candidates: (triangle, pixel) pairs processed at once; bounds peak memory.
    """
    B, N, _ = verts_cam.shape
    assert faces.ndim == 2 and faces.shape[1] == 3, faces.shape
    assert K.shape == (B, 3, 3), K.shape
    device = verts_cam.device
    verts_cam = verts_cam.float()
    z = verts_cam[..., 2]
    uvw = verts_cam @ K.float().transpose(-1, -2)
    xy = uvw[..., :2] / z.clamp(min=near)[..., None]
    tri_xy = xy[:, faces]  # (B, F, 3, 2)
    tri_z = z[:, faces]  # (B, F, 3)

    # Pixel-centre bounding boxes: centres c = i + 0.5 within [min, max] of the triangle.
    lo = torch.ceil(tri_xy.amin(dim=2) - 0.5).clamp(min=0)
    hi = torch.floor(tri_xy.amax(dim=2) - 0.5)
    hi = torch.stack([hi[..., 0].clamp(max=width - 1), hi[..., 1].clamp(max=height - 1)], dim=-1)
    area2 = _edge(tri_xy[..., 0, :], tri_xy[..., 1, :], tri_xy[..., 2, :])
    keep = (tri_z.amin(dim=2) > near) & (area2.abs() > 1e-9) & (hi >= lo).all(dim=-1)
    if cull_backfaces:
        # With y pointing down, a triangle wound counter-clockwise towards the viewer has
        # negative signed area on screen.
        keep &= area2 < 0
    batch_idx, face_idx = keep.nonzero(as_tuple=True)
    planes = _plane_coefficients(tri_xy[batch_idx, face_idx], area2[batch_idx, face_idx], tri_z[batch_idx, face_idx])
    lo, hi = lo[batch_idx, face_idx].long(), hi[batch_idx, face_idx].long()
    # index_select rather than tensor[index] below: measured 5x faster for row gathers on CPU.

    # One entry per (triangle, bounding-box row), then the row's run of inside pixel centres.
    rows_per = hi[:, 1] - lo[:, 1] + 1
    tri = torch.repeat_interleave(torch.arange(rows_per.numel(), device=device), rows_per)
    lo_t, hi_t = lo.index_select(0, tri), hi.index_select(0, tri)
    row = lo_t[:, 1] + _ranks(rows_per, tri)
    a0, b0, c0, a1, b1, c1, iz2, d0, d1 = planes.index_select(0, tri).unbind(dim=1)
    y = row.float() + 0.5
    r0, r1 = b0 * y + c0, b1 * y + c1
    x_lo, x_hi = _row_span(a0, r0, a1, r1)
    x0 = torch.maximum(torch.ceil(x_lo - 0.5).clamp(min=-1, max=width).long(), lo_t[:, 0])
    x1 = torch.minimum(torch.floor(x_hi - 0.5).clamp(min=-1, max=width).long(), hi_t[:, 0])
    counts = (x1 - x0 + 1).clamp(min=0)
    # Inverse depth is affine along the row: its value at the run's first centre and its step.
    x_first = x0.float() + 0.5
    iz_start = iz2 + (a0 * x_first + r0) * d0 + (a1 * x_first + r1) * d1
    iz_step = a0 * d0 + a1 * d1
    pixel_start = (batch_idx.index_select(0, tri) * height + row) * width + x0
    runs = counts > 0
    counts, iz_start, iz_step = counts[runs], iz_start[runs], iz_step[runs]
    pixel_start, run_face = pixel_start[runs], face_idx.index_select(0, tri[runs])

    keys = torch.full((B * height * width,), _EMPTY_KEY, dtype=torch.int64, device=device)
    cum = torch.cumsum(counts, 0)
    start = 0
    while start < counts.numel():
        offset = cum[start - 1].item() if start > 0 else 0
        stop = int(torch.searchsorted(cum, torch.tensor(offset + max_candidates, device=device), right=True))
        stop = max(stop, start + 1)
        sel = slice(start, stop)
        _depth_test(keys, counts[sel], iz_start[sel], iz_step[sel], pixel_start[sel], run_face[sel])
        start = stop

    pixels = (keys != _EMPTY_KEY).nonzero().squeeze(1)
    key = keys.index_select(0, pixels)
    depth = (key >> 32).to(torch.int32).view(torch.float32)  # the bits packed by _depth_test
    return Fragments(
        shape=(B, height, width),
        pixels=pixels,
        faces=key & _LOW32,
        depth=depth,
        screen_triangles=tri_xy,
        triangle_depths=tri_z,
    )


def interpolate_vertex_attributes(
    fragments: Fragments, faces: Int[Tensor, "F 3"], attr: Float[Tensor, "B N C"]
) -> Float[Tensor, "P C"]:
    """Perspective-correct interpolation of per-vertex attributes at each covered pixel."""
    b = fragments.pixels // (fragments.shape[1] * fragments.shape[2])
    values = attr[b[:, None], faces[fragments.faces]]  # (P, 3, C)
    return (fragments.barycentrics()[..., None] * values).sum(dim=1)


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p): the edge function of p against a->b."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _ranks(counts: Tensor, owner: Tensor) -> Tensor:
    """Position of each element within its group, for groups laid out by repeat_interleave."""
    return torch.arange(owner.numel(), device=owner.device) - (torch.cumsum(counts, 0) - counts).index_select(0, owner)


def _plane_coefficients(tri: Tensor, area2: Tensor, z: Tensor) -> Tensor:
    """(K, 9): w0 = a0 x + b0 y + c0, w1 = a1 x + b1 y + c1, 1/z = iz2 + w0 d0 + w1 d1."""
    v0, v1, v2 = tri.unbind(dim=1)

    def edge_coefficients(a: Tensor, b: Tensor) -> list[Tensor]:
        # edge(a, b, p) = -(b_y - a_y) p_x + (b_x - a_x) p_y + (b_y - a_y) a_x - (b_x - a_x) a_y
        dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        return [-dy / area2, dx / area2, (dy * a[:, 0] - dx * a[:, 1]) / area2]

    inv_z = 1.0 / z
    return torch.stack(
        [
            *edge_coefficients(v1, v2),
            *edge_coefficients(v2, v0),
            inv_z[:, 2],
            inv_z[:, 0] - inv_z[:, 2],
            inv_z[:, 1] - inv_z[:, 2],
        ],
        dim=1,
    )


def _row_span(a0: Tensor, r0: Tensor, a1: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
    """x-interval where all three barycentrics are >= -eps along a row.

    On the row each barycentric is ``a x + r`` (the third is ``1 - w0 - w1``): a lower bound on
    x when a > 0, an upper one when a < 0, and all-or-nothing when a == 0.
    """
    a = torch.stack([a0, a1, -(a0 + a1)], dim=1)
    r = torch.stack([r0, r1, 1.0 - r0 - r1], dim=1)
    bound = (-_EPS - r) / torch.where(a == 0, torch.ones_like(a), a)
    x_lo = torch.where(a > 0, bound, torch.full_like(a, -float("inf"))).amax(dim=1)
    x_hi = torch.where(a < 0, bound, torch.full_like(a, float("inf"))).amin(dim=1)
    empty = ((a == 0) & (r < -_EPS)).any(dim=1)
    return x_lo, torch.where(empty, torch.full_like(x_hi, -float("inf")), x_hi)


def _depth_test(
    keys: Tensor, counts: Tensor, iz_start: Tensor, iz_step: Tensor, pixel_start: Tensor, face: Tensor
) -> None:
    """Expands runs into pixels and keeps the nearest (depth, face) key per pixel, in place."""
    run = torch.repeat_interleave(torch.arange(counts.numel(), device=keys.device), counts)
    col = _ranks(counts, run)
    depth = (1.0 / (iz_start.index_select(0, run) + col * iz_step.index_select(0, run))).float()
    # Positive float32 bit patterns sort like the floats, so (depth bits, face) packs into one
    # int64 key whose minimum is the nearest triangle (ties broken by the lower face index).
    key = (depth.view(torch.int32).long() << 32) | face.index_select(0, run)
    keys.scatter_reduce_(0, pixel_start.index_select(0, run) + col, key, reduce="amin", include_self=True)
