"""Pure-torch Gaussian rasteriser: the CPU path and the reference the gsplat path is tested against.

It composites exactly the (Gaussian, pixel) pairs gsplat's kernel does, in the same order:
a Gaussian is considered in every 16x16 tile its 3-sigma square overlaps, and within those
tiles at every pixel where its alpha reaches 1/255; pixels composite front to back by
float32 depth (ties by Gaussian index) and stop before the Gaussian that would take
transmittance to 1e-4 or below. Rather than looping over tiles, the Gaussians are taken front
to back and each is listed row by row, over the exact span of its alpha >= 1/255 ellipse on that
row (within its tiles); the alpha test then settles rounding at the span's ends, and one stable
sort by pixel puts every pixel's pairs in compositing order. Transmittance is the exponential of
a segmented cumulative sum of log(1 - alpha), in float64 because the running sum over all pairs
of an image is large, and each pixel's colour, depth and alpha are one scatter-add; the pairs'
alphas and the compositing have their backward pass written out (:class:`_AlphaComposite`), the
rest is autograd's. Only the surviving pairs are in the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import once_differentiable

from hand4dgs_ns.render.output import ALPHA_MAX, ALPHA_MIN, TILE_SIZE, TRANSMITTANCE_MIN, RenderOutput
from hand4dgs_ns.render.torch_projection import ProjectedGaussians, project_gaussians

_BOX_SLACK = 1e-3
"""Pixels by which the listed rows and spans exceed those of the listed ellipse (float rounding)."""
_REACH_SLACK = 1e-2
"""Added to a Gaussian's reach (its ellipse 0.5 d^T cov^-1 d <= reach) for listing: alpha 1% below 1/255."""


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
    return _sigma_of_offset(centre - means2d, conics)


def _sigma_of_offset(d: Float[Tensor, "M 2"], conics: Float[Tensor, "M 3"]) -> Float[Tensor, "M"]:
    """:func:`_sigma` of the offsets ``d = centre - mean`` (the same operations, so the same values)."""
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
    n = proj.radii.shape[1]
    device = proj.radii.device
    means2d = proj.means2d.detach().reshape(-1, 2)
    conics = proj.conics.detach().reshape(-1, 3)
    cov2d = proj.cov2d.detach().reshape(-1, 3)
    radii = proj.radii.reshape(-1)
    opac = opacities.detach().reshape(-1)

    # The alpha >= ALPHA_MIN ellipse is 0.5 d^T cov^-1 d <= reach, reach = log(opacity / ALPHA_MIN).
    # Rows and spans are listed for a slightly larger ellipse: near its top and bottom a span's
    # ends move fast with reach, and the float32 alpha test below must find every pixel it passes
    # inside the listed spans (the test, not the spans, decides).
    reach = torch.log(torch.clamp(opac / ALPHA_MIN, min=1.0))
    listed_reach = reach + _REACH_SLACK
    half_h = torch.sqrt(2.0 * listed_reach * cov2d[:, 2])
    u, v = means2d[:, 0], means2d[:, 1]
    tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    # gsplat's tile range of the 3-sigma square, as pixel bounds.
    tile_x0 = torch.clamp(torch.floor((u - radii) / TILE_SIZE), 0, tiles_x) * TILE_SIZE
    tile_x1 = torch.clamp(torch.ceil((u + radii) / TILE_SIZE), 0, tiles_x) * TILE_SIZE
    tile_y0 = torch.clamp(torch.floor((v - radii) / TILE_SIZE), 0, tiles_y) * TILE_SIZE
    tile_y1 = torch.clamp(torch.ceil((v + radii) / TILE_SIZE), 0, tiles_y) * TILE_SIZE
    # Rows y with centre y + 0.5 in [v - half_h, v + half_h], intersected with the tiles.
    y0 = torch.maximum(tile_y0, torch.ceil(v - half_h - 0.5 - _BOX_SLACK))
    y1 = torch.minimum(tile_y1, torch.floor(v + half_h - 0.5 + _BOX_SLACK) + 1).clamp(max=height)
    rows = torch.clamp(y1 - y0, min=0).long() * (proj.valid.reshape(-1) & (reach > 0) & (tile_x1 > tile_x0))

    # Gaussians front to back, gsplat's order: float32 depth, ties by index (on surfaces facing the
    # camera, overlapping Gaussians are often closer in depth than a float32 step, and their order
    # changes the colour). Listing the rows (and so the pairs) in this order lets one stable sort
    # by pixel give the compositing order.
    depth_order = torch.argsort(proj.depths.detach().float().reshape(-1), stable=True)
    ids = depth_order[rows.index_select(0, depth_order) > 0]
    rows = rows.index_select(0, ids)
    # One entry per (Gaussian, row): the ellipse's exact x-span on that row, within the tiles.
    row_owner = torch.repeat_interleave(ids, rows)
    row_first = torch.cumsum(rows, 0) - rows
    row_y = y0.index_select(0, row_owner) + (
        torch.arange(row_owner.numel(), device=device) - torch.repeat_interleave(row_first, rows)
    )
    a, b, c = conics.index_select(0, row_owner).unbind(-1)
    dy = row_y + 0.5 - v.index_select(0, row_owner)
    # 0.5 a dx^2 + b dy dx + 0.5 c dy^2 <= reach, a quadratic in dx.
    root = torch.sqrt(torch.clamp(b * b * dy * dy - a * (c * dy * dy - 2.0 * listed_reach.index_select(0, row_owner)), min=0.0))
    ur = u.index_select(0, row_owner)
    xs = torch.maximum(tile_x0.index_select(0, row_owner), torch.ceil(ur + (-b * dy - root) / a - 0.5 - _BOX_SLACK))
    xe = torch.minimum(tile_x1.index_select(0, row_owner), torch.floor(ur + (-b * dy + root) / a - 0.5 + _BOX_SLACK) + 1)
    span = torch.clamp(xe.clamp(max=width) - xs, min=0).long()

    # The pairs: every pixel of every span, still front to back.
    owner = torch.repeat_interleave(span)
    first = torch.cumsum(span, 0) - span
    px = xs.long().index_select(0, owner) + (torch.arange(owner.numel(), device=device) - first.index_select(0, owner))
    gaussian = row_owner.index_select(0, owner)
    camera = torch.div(gaussian, n, rounding_mode="floor")
    pixel = (camera * height + row_y.long().index_select(0, owner)) * width + px
    centre = torch.stack([px.to(means2d.dtype), row_y.index_select(0, owner).to(means2d.dtype)], dim=-1) + 0.5

    # The spans are exact up to rounding: the alpha test decides, as in gsplat.
    table = torch.cat([means2d, conics, opac[:, None]], dim=-1).index_select(0, gaussian)
    sigma = _sigma(table[:, :2], table[:, 2:5], centre)
    alpha = torch.clamp(table[:, 5] * torch.exp(-sigma), max=ALPHA_MAX)
    hit = ((sigma >= 0) & (alpha >= ALPHA_MIN)).nonzero().flatten()
    # A stable sort by pixel keeps each pixel's pairs front to back (int32 keys sort faster).
    assert proj.radii.shape[0] * height * width < 2**31, "pixel ids must fit int32"
    order = hit.index_select(0, torch.sort(pixel.index_select(0, hit).int(), stable=True).indices)
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


class _AlphaComposite(torch.autograd.Function):
    """Each pair's alpha from its Gaussian, then front-to-back compositing of the sorted pairs:
    ``out[p] = sum_i alpha_i T_i f_i`` per pixel.

    ``table`` holds each Gaussian's 2D mean, conic, opacity and then the features to composite;
    a pair's alpha is ``min(opacity exp(-sigma), ALPHA_MAX)`` at its pixel centre (:func:`_sigma`).
    Written by hand (no library composites on the CPU) because autograd through the running sum of
    log(1 - alpha) keeps and walks back a dozen pair-sized intermediates, and through the alpha a
    node per column taken from the gathered table; gsplat's own backward uses the same closed form:
    d out / d alpha_i = T_i f_i - (sum over the pixel's later pairs of alpha_j T_j f_j) / (1 - alpha_i).
    Running sums are float64 (a sum over all pairs of an image).
    """

    @staticmethod
    def forward(
        ctx, table: Tensor, gaussian: Tensor, centre: Tensor, pixel: Tensor, segment_start: Tensor, num_pixels: int
    ) -> Tensor:
        per_pair = table.index_select(0, gaussian)
        d = centre - per_pair[:, :2]
        falloff = torch.exp(-_sigma_of_offset(d, per_pair[:, 2:5]))
        alpha = torch.clamp(per_pair[:, 5] * falloff, max=ALPHA_MAX)
        features = per_pair[:, 6:]
        log_t = torch.log1p(-alpha.double())
        exclusive = torch.cumsum(log_t, 0) - log_t
        transmittance = torch.exp(exclusive - exclusive.index_select(0, segment_start)).to(alpha.dtype)
        weight = alpha * transmittance
        out = torch.zeros(num_pixels, features.shape[1], dtype=features.dtype, device=features.device)
        out.index_add_(0, pixel, features * weight[:, None])
        # The offsets are recomputed in backward from the pixel centres, which the pairs hold anyway.
        ctx.save_for_backward(per_pair, centre, falloff, alpha, gaussian, pixel, segment_start, transmittance)
        ctx.num_pixels, ctx.num_gaussians = num_pixels, table.shape[0]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        per_pair, centre, falloff, alpha, gaussian, pixel, segment_start, transmittance = ctx.saved_tensors
        features = per_pair[:, 6:]
        weight = alpha * transmittance
        grad_pair = grad_out.index_select(0, pixel)
        grad_features = grad_pair * weight[:, None]
        # g_i = dL/d out . f_i; the later pairs' share sum_{j>i} w_j g_j is a reversed segmented cumsum.
        g = (grad_pair * features).sum(-1)
        wg = (weight * g).double()
        inclusive = torch.cumsum(wg, 0)
        within = inclusive - (inclusive - wg).index_select(0, segment_start)  # this pixel's pairs up to i
        total = torch.zeros(ctx.num_pixels, dtype=wg.dtype, device=wg.device).index_add_(0, pixel, wg)
        later = (total.index_select(0, pixel) - within).to(alpha.dtype)
        grad_alpha = transmittance * g - later / (1.0 - alpha)
        # Through the clamp (none where opacity x falloff reaches ALPHA_MAX; selected, as torch.clamp's
        # backward does, so a non-finite gradient there stays out), then the falloff: where the
        # gradient passes, alpha is opacity x falloff.
        grad_raw = torch.where(alpha < ALPHA_MAX, grad_alpha, torch.zeros_like(grad_alpha))
        grad_sigma = -grad_raw * alpha
        d = centre - per_pair[:, :2]
        dx, dy = d[:, 0], d[:, 1]
        a, b, c = per_pair[:, 2], per_pair[:, 3], per_pair[:, 4]
        grad_table_rows = torch.cat(
            [
                (-grad_sigma * (a * dx + b * dy))[:, None],  # d = centre - mean: d sigma / d mean = -(d sigma / d d)
                (-grad_sigma * (c * dy + b * dx))[:, None],
                (grad_sigma * 0.5 * dx * dx)[:, None],
                (grad_sigma * dx * dy)[:, None],
                (grad_sigma * 0.5 * dy * dy)[:, None],
                (grad_raw * falloff)[:, None],
                grad_features,
            ],
            dim=-1,
        )
        grad_table = torch.zeros(ctx.num_gaussians, per_pair.shape[1], dtype=per_pair.dtype, device=per_pair.device)
        grad_table.index_add_(0, gaussian, grad_table_rows)
        return grad_table, None, None, None, None, None


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

    # Everything a pair needs from its Gaussian, in one table (gathered in one op, one scatter in
    # backward): the 2D mean, conic and opacity for the alpha, then colour, depth and a 1 (for the
    # accumulated alpha) to composite per pixel.
    depths = proj.depths[..., None]
    table = torch.cat([proj.means2d, proj.conics, opacities[..., None], colors, depths, torch.ones_like(depths)], -1)
    acc = _AlphaComposite.apply(
        table.reshape(batch * means.shape[1], 11), pairs.gaussian, pairs.centre, pairs.pixel, pairs.segment_start,
        batch * height * width,
    )
    acc = acc.reshape(batch, height, width, 5)

    alpha_img = acc[..., 4:5]
    rgb = acc[..., :3]
    if backgrounds is not None:
        rgb = rgb + (1.0 - alpha_img) * backgrounds[:, None, None, :]
    depth = acc[..., 3:4] / torch.clamp(alpha_img, min=1e-10)
    return RenderOutput(rgb=rgb, alpha=alpha_img, depth=depth)
