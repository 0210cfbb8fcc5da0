"""Pure-torch Gaussian rasteriser: the CPU path and the reference the gsplat path is tested against.

It composites exactly the (Gaussian, pixel) pairs gsplat's kernel does, in the same order:
a Gaussian is considered in every 16x16 tile its 3-sigma square overlaps, and within those
tiles at every pixel where its alpha reaches 1/255; pixels composite front to back by
float32 depth (ties by Gaussian index) and stop before the Gaussian that would take
transmittance to 1e-4 or below. Rather than looping over tiles, the pairs are enumerated in
the intersection of the tile range with the bounding box of the alpha >= 1/255 ellipse,
filtered, and sorted once by (pixel, depth). Transmittance is then the exponential of a
segmented cumulative sum of log(1 - alpha), in float64 because the running sum over all
pairs of an image is large, and each pixel's colour, depth and alpha are one scatter-add.
Autograd does the backward pass; only the surviving pairs are in the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from hand4dgs_ns.render.output import ALPHA_MAX, ALPHA_MIN, TILE_SIZE, TRANSMITTANCE_MIN, RenderOutput
from hand4dgs_ns.render.torch_projection import ProjectedGaussians, project_gaussians

_BOX_SLACK = 1e-3
"""Pixels by which the enumeration box exceeds the exact alpha >= 1/255 box (float rounding)."""


@dataclass(frozen=True)
class _Pairs:
    """Surviving (Gaussian, pixel) pairs in compositing order: by pixel, then front to back."""

    gaussian: Int[Tensor, "M"]
    """Flat index into the B*N projected Gaussians."""
    pixel: Int[Tensor, "M"]
    """Flat index into the B*H*W output pixels."""
    centre: Float[Tensor, "M 2"]
    """The pixel's centre (x + 0.5, y + 0.5) in image coordinates."""
    segment_start: Int[Tensor, "M"]
    """Position (in these arrays) of the first pair of the same pixel."""


def _sigma(means2d: Float[Tensor, "M 2"], conics: Float[Tensor, "M 3"], centre: Float[Tensor, "M 2"]) -> Float[Tensor, "M"]:
    """Half the squared Mahalanobis distance from each pair's Gaussian to its pixel centre."""
    d = centre - means2d
    dx, dy = d[:, 0], d[:, 1]
    return 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy


def _segment_starts(pixel: Int[Tensor, "M"]) -> Int[Tensor, "M"]:
    """For sorted pixel ids, the index of the first entry of each entry's run."""
    is_first = torch.ones_like(pixel, dtype=torch.bool)
    is_first[1:] = pixel[1:] != pixel[:-1]
    firsts = is_first.nonzero().flatten()
    return firsts[torch.cumsum(is_first, 0) - 1]


@torch.no_grad()
def _enumerate_pairs(
    proj: ProjectedGaussians, opacities: Float[Tensor, "B N"], width: int, height: int
) -> _Pairs:
    """All pairs gsplat would composite, in compositing order."""
    batch, n = proj.radii.shape
    device = proj.radii.device
    means2d = proj.means2d.detach().reshape(-1, 2)
    conics = proj.conics.detach().reshape(-1, 3)
    cov2d = proj.cov2d.detach().reshape(-1, 3)
    radii = proj.radii.reshape(-1)
    opac = opacities.detach().reshape(-1)

    # Box of the alpha >= ALPHA_MIN ellipse 0.5 d^T cov^-1 d <= log(opacity / ALPHA_MIN).
    reach = torch.log(torch.clamp(opac / ALPHA_MIN, min=1.0))
    half_w = torch.sqrt(2.0 * reach * cov2d[:, 0])
    half_h = torch.sqrt(2.0 * reach * cov2d[:, 2])
    u, v = means2d[:, 0], means2d[:, 1]
    tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    # gsplat's tile range of the 3-sigma square, as pixel bounds.
    tile_x0 = torch.clamp(torch.floor((u - radii) / TILE_SIZE), 0, tiles_x) * TILE_SIZE
    tile_x1 = torch.clamp(torch.ceil((u + radii) / TILE_SIZE), 0, tiles_x) * TILE_SIZE
    tile_y0 = torch.clamp(torch.floor((v - radii) / TILE_SIZE), 0, tiles_y) * TILE_SIZE
    tile_y1 = torch.clamp(torch.ceil((v + radii) / TILE_SIZE), 0, tiles_y) * TILE_SIZE
    # Pixels x with centre x + 0.5 in [u - half_w, u + half_w], intersected with the tiles.
    x0 = torch.maximum(tile_x0, torch.ceil(u - half_w - 0.5 - _BOX_SLACK))
    x1 = torch.minimum(tile_x1, torch.floor(u + half_w - 0.5 + _BOX_SLACK) + 1).clamp(max=width)
    y0 = torch.maximum(tile_y0, torch.ceil(v - half_h - 0.5 - _BOX_SLACK))
    y1 = torch.minimum(tile_y1, torch.floor(v + half_h - 0.5 + _BOX_SLACK) + 1).clamp(max=height)
    box_w = torch.clamp(x1 - x0, min=0).long()
    counts = box_w * torch.clamp(y1 - y0, min=0).long() * (proj.valid.reshape(-1) & (reach > 0))

    ids = counts.nonzero().flatten()
    counts = counts[ids]
    first = torch.cumsum(counts, 0) - counts
    # Per-box integers gathered to the pairs in one go: owner id, box origin, width, first pair.
    boxes = torch.stack([ids, x0.long()[ids], y0.long()[ids], box_w[ids], first], dim=-1)
    owner = torch.repeat_interleave(torch.arange(ids.numel(), device=device), counts)
    gaussian, bx, by, bw, bfirst = boxes.index_select(0, owner).unbind(-1)
    local = torch.arange(owner.numel(), device=device) - bfirst
    row = torch.div(local, bw, rounding_mode="floor")
    px, py = bx + (local - row * bw), by + row
    camera = torch.div(gaussian, n, rounding_mode="floor")
    pixel = (camera * height + py) * width + px
    centre = torch.stack([px, py], dim=-1).to(means2d.dtype) + 0.5

    table = torch.cat([means2d, conics, opac[:, None]], dim=-1).index_select(0, gaussian)
    sigma = _sigma(table[:, :2], table[:, 2:5], centre)
    alpha = torch.clamp(table[:, 5] * torch.exp(-sigma), max=ALPHA_MAX)
    hit = ((sigma >= 0) & (alpha >= ALPHA_MIN)).nonzero().flatten()

    # One sort on a combined key: pixel, then depth rank (front to back). The depth order is
    # gsplat's: float32 depth, ties by Gaussian index. On surfaces facing the camera, overlapping
    # Gaussians are often closer in depth than a float32 step, and their order changes the colour.
    depth_rank = torch.empty(batch * n, dtype=torch.long, device=device)
    depth_order = torch.argsort(proj.depths.detach().float().reshape(-1), stable=True)
    depth_rank[depth_order] = torch.arange(batch * n, device=device)
    key = pixel.index_select(0, hit) * (batch * n) + depth_rank.index_select(0, gaussian.index_select(0, hit))
    order = hit.index_select(0, torch.argsort(key))
    sorted_pixel = pixel.index_select(0, order)

    # Drop the tail of each pixel where gsplat has stopped (transmittance would reach T_min).
    log_t = torch.log1p(-alpha.index_select(0, order).double())
    running = torch.cumsum(log_t, 0)
    log_t_after = running - (running - log_t)[_segment_starts(sorted_pixel)]
    order = order[log_t_after > math.log(TRANSMITTANCE_MIN)]
    pixel = pixel.index_select(0, order)
    return _Pairs(
        gaussian=gaussian.index_select(0, order),
        pixel=pixel,
        centre=centre.index_select(0, order),
        segment_start=_segment_starts(pixel),
    )


def _rasterize_torch(
    means: Float[Tensor, "B N 3"],
    quats: Float[Tensor, "B N 4"],
    scales: Float[Tensor, "B N 3"],
    opacities: Float[Tensor, "B N"],
    colors: Float[Tensor, "B N 3"],
    viewmats: Float[Tensor, "B 4 4"],
    Ks: Float[Tensor, "B 3 3"],
    width: int,
    height: int,
    backgrounds: Float[Tensor, "B 3"] | None = None,
) -> RenderOutput:
    """Reference rasteriser with gsplat's semantics (inputs already validated by ``rasterize``)."""
    batch = means.shape[0]
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    pairs = _enumerate_pairs(proj, opacities, width, height)

    # Everything a pair needs from its Gaussian, gathered in one op (one scatter in backward).
    depths = proj.depths[..., None]
    table = torch.cat([proj.means2d, proj.conics, opacities[..., None], colors, depths, torch.ones_like(depths)], -1)
    per_pair = table.reshape(batch * means.shape[1], 11).index_select(0, pairs.gaussian)
    sigma = _sigma(per_pair[:, :2], per_pair[:, 2:5], pairs.centre)
    alpha = torch.clamp(per_pair[:, 5] * torch.exp(-sigma), max=ALPHA_MAX)
    log_t = torch.log1p(-alpha.double())
    exclusive = torch.cumsum(log_t, 0) - log_t
    transmittance = torch.exp(exclusive - exclusive.index_select(0, pairs.segment_start)).to(alpha.dtype)
    weight = alpha * transmittance

    # Colour, depth and a 1 (for the accumulated alpha), weighted and summed per pixel.
    contributions = per_pair[:, 6:] * weight[:, None]
    acc = torch.zeros(batch * height * width, 5, dtype=table.dtype, device=table.device)
    acc = acc.index_add(0, pairs.pixel, contributions).reshape(batch, height, width, 5)

    alpha_img = acc[..., 4:5]
    rgb = acc[..., :3]
    if backgrounds is not None:
        rgb = rgb + (1.0 - alpha_img) * backgrounds[:, None, None, :]
    depth = acc[..., 3:4] / torch.clamp(alpha_img, min=1e-10)
    return RenderOutput(rgb=rgb, alpha=alpha_img, depth=depth)
