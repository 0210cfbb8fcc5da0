"""The pure-torch rasteriser (CPU path): analytic cases, compositing, gradients, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from hand4dgs_ns.render import RenderOutput, rasterize
from hand4dgs_ns.render.output import ALPHA_MAX, ALPHA_MIN, EPS2D, TILE_SIZE, TRANSMITTANCE_MIN
from hand4dgs_ns.render.scenes import hand_like_scene
from hand4dgs_ns.render.torch_projection import project_gaussians
from hand4dgs_ns.render.torch_rasterizer import _AlphaComposite, _enumerate_pairs, _segment_starts, _sigma

IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)


def _camera(focal: float, cx: float, cy: float, batch: int = 1, dtype=torch.float64):
    k = torch.tensor([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]], dtype=dtype)
    return torch.eye(4, dtype=dtype).expand(batch, 4, 4), k.expand(batch, 3, 3)


def _render(means, scales, opacities, colors, focal=40.0, cx=8.5, cy=8.5, size=(16, 16), backgrounds=None):
    """One camera at the origin looking down +z; isotropic-rotation Gaussians."""
    means, scales, opacities, colors = (torch.as_tensor(x, dtype=torch.float64)[None] for x in
                                        (means, scales, opacities, colors))
    quats = torch.tensor(IDENTITY_QUAT, dtype=torch.float64).expand(1, means.shape[1], 4)
    viewmats, ks = _camera(focal, cx, cy)
    return rasterize(means, quats, scales, opacities, colors, viewmats, ks, size[0], size[1],
                     backgrounds=backgrounds, backend="torch")


def test_single_gaussian_matches_analytic_footprint():
    focal, s, opacity, color = 40.0, 0.05, 0.7, torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    out = _render([[0.0, 0.0, 1.0]], [[s, s, s]], [opacity], color[None])
    assert isinstance(out, RenderOutput)
    assert out.rgb.shape == (1, 16, 16, 3) and out.alpha.shape == out.depth.shape == (1, 16, 16, 1)
    # Centred, so the Jacobian is diag(f / z): an isotropic 2D Gaussian of variance (f s)^2 + EPS2D.
    var = (focal * s) ** 2 + EPS2D
    centres = torch.arange(16, dtype=torch.float64) + 0.5
    d2 = (centres[None, :] - 8.5) ** 2 + (centres[:, None] - 8.5) ** 2
    alpha = opacity * torch.exp(-0.5 * d2 / var)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out.alpha[0, ..., 0], alpha, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * color, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out.depth[0, ..., 0], (alpha > 0).double(), atol=1e-12, rtol=1e-12)
    assert out.alpha[0, 8, 8, 0] == pytest.approx(opacity)  # peak at the projected pixel
    assert (alpha == 0).any() and (alpha > 0).sum() > 50  # the cut-off at 1/255 is exercised


def test_peak_lands_where_the_centre_projects():
    out = _render([[0.1, -0.05, 1.0]], [[0.02, 0.02, 0.02]], [0.9], [[1.0, 1.0, 1.0]])
    # u = 40 * 0.1 + 8.5 = 12.5, v = 40 * -0.05 + 8.5 = 6.5: the centre of pixel (x 12, y 6).
    peak = out.alpha[0, ..., 0].argmax()
    assert (int(peak // 16), int(peak % 16)) == (6, 12)
    assert out.alpha[0, 6, 12, 0] == pytest.approx(0.9)
    assert out.depth[0, 6, 12, 0] == pytest.approx(1.0)


def test_projection_matches_gsplat_torch_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    g = torch.Generator().manual_seed(0)
    n = 400
    means = 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    means[:5, 2] = -0.5  # behind the camera: culled
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = 0.05 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64)[None].clone()
    viewmats[0, :3, 3] = torch.tensor([0.05, -0.02, 0.1])
    ks = torch.tensor([[[100.0, 0.0, 64.0], [0.0, 110.0, 48.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, ks, 128, 96)
    ours = project_gaussians(means[None], quats[None], scales[None], viewmats, ks, 128, 96)
    valid = radii > 0
    assert torch.equal(ours.valid, valid) and 300 < int(valid.sum()) < n
    torch.testing.assert_close(ours.radii[valid], radii[valid].double())
    for mine, theirs in ((ours.means2d, means2d), (ours.conics, conics), (ours.depths, depths)):
        torch.testing.assert_close(mine[valid], theirs[valid])


def test_front_opaque_gaussian_hides_the_back_one():
    red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    means = [[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]
    scales = [[0.05, 0.05, 0.05], [0.4, 0.4, 0.4]]
    out = _render(means, scales, [1.0, 1.0], [red, green])
    flipped = _render(means[::-1], scales[::-1], [1.0, 1.0], [green, red])
    for o in (out, flipped):
        # alpha is clamped to 0.999; the back Gaussian would take T to 1e-6 <= 1e-4: it is skipped.
        torch.testing.assert_close(o.rgb[0, 8, 8], torch.tensor([ALPHA_MAX, 0.0, 0.0], dtype=torch.float64))
        assert o.alpha[0, 8, 8, 0] == pytest.approx(ALPHA_MAX)
        assert o.depth[0, 8, 8, 0] == pytest.approx(1.0)
    torch.testing.assert_close(out.rgb, flipped.rgb)
    torch.testing.assert_close(out.depth, flipped.depth)
    # Where only the back one reaches, it shows with its own depth.
    assert out.depth[0, 8, 1, 0] == pytest.approx(2.0)
    assert out.rgb[0, 8, 1, 1] > 0.5 and out.rgb[0, 8, 1, 0] == 0


def test_semi_transparent_compositing_order():
    means = [[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]
    out = _render(means, [[0.05] * 3, [0.1] * 3], [0.5, 0.8], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Both centres project onto the centre of pixel (8, 8): alpha_i = opacity_i there.
    w_front, w_back = 0.5, 0.5 * 0.8
    torch.testing.assert_close(out.rgb[0, 8, 8], torch.tensor([w_front, w_back, 0.0], dtype=torch.float64))
    assert out.alpha[0, 8, 8, 0] == pytest.approx(w_front + w_back)
    assert out.depth[0, 8, 8, 0] == pytest.approx((w_front * 1.0 + w_back * 2.0) / (w_front + w_back))


def test_background_is_composited_behind():
    args = ([[0.0, 0.0, 1.0]], [[0.05] * 3], [0.8], [[0.2, 0.4, 0.6]])
    bg = torch.tensor([[0.3, 0.9, 1.0]], dtype=torch.float64)
    plain = _render(*args)
    with_bg = _render(*args, backgrounds=bg)
    torch.testing.assert_close(with_bg.rgb, plain.rgb + (1 - plain.alpha) * bg[:, None, None, :])
    torch.testing.assert_close(with_bg.alpha, plain.alpha)
    torch.testing.assert_close(with_bg.depth, plain.depth)
    torch.testing.assert_close(with_bg.rgb[0, 0, 0], bg[0])  # an empty corner
    assert plain.alpha[0, 0, 0, 0] == 0 and plain.depth[0, 0, 0, 0] == 0


def test_each_camera_renders_only_its_own_gaussians():
    scene = hand_like_scene(batch=3, width=48, height=36, per_face=0, dtype=torch.float64)
    both = rasterize(**scene.kwargs(), backend="torch")
    for b in range(3):
        single = {k: (v[b : b + 1] if torch.is_tensor(v) else v) for k, v in scene.kwargs().items()}
        one = rasterize(**single, backend="torch")
        for a, c in ((both.rgb, one.rgb), (both.alpha, one.alpha), (both.depth, one.depth)):
            torch.testing.assert_close(a[b : b + 1], c)
    assert not torch.allclose(both.alpha[0], both.alpha[1])


def _requires_grad(scene) -> dict:
    kwargs = scene.kwargs()
    for name in ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds"):
        kwargs[name] = kwargs[name].clone().requires_grad_(True)
    return kwargs


def test_gradients_reach_every_input_and_are_finite():
    kwargs = _requires_grad(hand_like_scene(batch=2, width=64, height=48, per_face=1))
    out = rasterize(**kwargs, backend="torch")
    g = torch.Generator().manual_seed(0)
    loss = sum((x * torch.randn(x.shape, generator=g)).sum() for x in (out.rgb, out.alpha, out.depth))
    loss.backward()
    for name in ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds"):
        grad = kwargs[name].grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    # Most Gaussians are visible, so most get a colour gradient.
    assert (kwargs["colors"].grad.abs().sum(-1) > 0).float().mean() > 0.5


def test_gradcheck_float64_tiny_scene():
    # Large, semi-transparent Gaussians cover the whole 8x8 image with alpha above 1/255 and keep
    # transmittance above 1e-4, so no pair enters or leaves under the finite-difference steps.
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[[0.01, -0.02, 1.0], [-0.03, 0.02, 1.2], [0.02, 0.03, 1.5]]], dtype=torch.float64)
    quats = torch.randn(1, 3, 4, generator=g, dtype=torch.float64)
    scales = torch.tensor([[[0.12, 0.09, 0.05], [0.1, 0.14, 0.02], [0.15, 0.12, 0.1]]], dtype=torch.float64)
    opacities = torch.tensor([[0.4, 0.6, 0.5]], dtype=torch.float64)
    colors = torch.rand(1, 3, 3, generator=g, dtype=torch.float64)
    backgrounds = torch.tensor([[0.2, 0.3, 0.4]], dtype=torch.float64)
    viewmats, ks = _camera(30.0, 4.0, 4.0)
    viewmats = viewmats.clone()
    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors, viewmats, backgrounds)]

    def render(m, q, s, o, c, v, bg):
        out = rasterize(m, q, s, o, c, v, ks, 8, 8, backgrounds=bg, backend="torch")
        return torch.cat([out.rgb.flatten(), out.alpha.flatten(), out.depth.flatten()])

    assert (render(*inputs)[8 * 8 * 3 : 8 * 8 * 4] > 0.05).all()  # alpha covers the image
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6)


def _pairs_by_definition(proj, opacities, width, height):
    """gsplat's pairs tested densely, every Gaussian against every pixel, in the projection's dtype:
    (Gaussian, pixel) in compositing order."""
    batch, n = proj.radii.shape
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px, py = xs.reshape(1, -1), ys.reshape(1, -1)
    pairs = []
    for cam in range(batch):
        u, v = proj.means2d[cam, :, :1], proj.means2d[cam, :, 1:]
        r = proj.radii[cam][:, None]
        # The pixel's tile must lie in the Gaussian's 3-sigma tile range.
        in_tiles = ((torch.floor((u - r) / TILE_SIZE) <= px // TILE_SIZE) & (px // TILE_SIZE < torch.ceil((u + r) / TILE_SIZE))
                    & (torch.floor((v - r) / TILE_SIZE) <= py // TILE_SIZE) & (py // TILE_SIZE < torch.ceil((v + r) / TILE_SIZE)))
        a, b, c = (proj.conics[cam, :, k : k + 1] for k in range(3))
        dx, dy = (px + 0.5).to(u.dtype) - u, (py + 0.5).to(v.dtype) - v
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[cam][:, None] * torch.exp(-sigma), max=ALPHA_MAX)
        hit = in_tiles & proj.valid[cam][:, None] & (sigma >= 0) & (alpha >= ALPHA_MIN)
        order = sorted(range(n), key=lambda i: (proj.depths[cam, i].float().item(), i))  # front to back
        for pixel in range(height * width):
            log_t = 0.0
            for i in order:
                if hit[i, pixel]:
                    log_t += math.log1p(-alpha[i, pixel].item())
                    if log_t <= math.log(TRANSMITTANCE_MIN):
                        break
                    pairs.append((cam * n + i, cam * height * width + pixel))
    return pairs


def test_alpha_composite_backward_matches_autograd_with_clamped_pairs():
    # Every pixel of a 6x5 image composites five Gaussians; the two of opacity 1 and a tiny conic
    # reach ALPHA_MAX at most pixels, where the clamp must cut their alpha's gradient.
    width, height, n = 6, 5, 5
    g = torch.Generator().manual_seed(0)
    table = torch.cat(
        [
            torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height], dtype=torch.float64),
            torch.tensor([[1e-4, 2e-5, 1e-4]] * 2 + [[0.3, 0.05, 0.2]] * 3, dtype=torch.float64),
            torch.tensor([[1.0], [1.0], [0.5], [0.7], [0.4]], dtype=torch.float64),
            torch.rand(n, 5, generator=g, dtype=torch.float64),
        ],
        dim=-1,
    )
    pixel = torch.arange(width * height).repeat_interleave(n)
    gaussian = torch.tensor([2, 0, 3, 1, 4]).repeat(width * height)  # front to back within each pixel
    centre = torch.stack([(pixel % width).double() + 0.5, (pixel // width).double() + 0.5], dim=-1)
    segment_start = _segment_starts(pixel)

    def reference(t):  # the same quantities through autograd
        per_pair = t.index_select(0, gaussian)
        alpha = torch.clamp(per_pair[:, 5] * torch.exp(-_sigma(per_pair[:, :2], per_pair[:, 2:5], centre)), max=ALPHA_MAX)
        transmittance = torch.cat([torch.ones(1, dtype=t.dtype), torch.cumprod(1 - alpha, 0)[:-1]]).reshape(-1, n)
        transmittance = transmittance / transmittance[:, :1]  # restart at every pixel (n pairs each)
        weight = alpha * transmittance.flatten()
        return torch.zeros(width * height, 5, dtype=t.dtype).index_add(0, pixel, per_pair[:, 6:] * weight[:, None])

    per_pair = table.index_select(0, gaussian)
    raw = per_pair[:, 5] * torch.exp(-_sigma(per_pair[:, :2], per_pair[:, 2:5], centre))
    assert (raw > ALPHA_MAX).sum() >= 40  # the two opaque Gaussians clamp at most of their 60 pairs
    grad_out = torch.randn(width * height, 5, generator=g, dtype=torch.float64)
    ours, ref = table.clone().requires_grad_(True), table.clone().requires_grad_(True)
    out = _AlphaComposite.apply(ours, gaussian, centre, pixel, segment_start, width * height)
    torch.testing.assert_close(out, reference(table))
    (out * grad_out).sum().backward()
    (reference(ref) * grad_out).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-9, atol=1e-10)


def test_pairs_are_exactly_gsplats_pixel_by_pixel():
    # Anisotropic, rotated, overlapping Gaussians of mixed opacity on two cameras, some opaque
    # enough to stop a pixel early: the row-span enumeration must list exactly these pairs.
    g = torch.Generator().manual_seed(3)
    batch, n, width, height = 2, 24, 37, 29
    means = torch.cat([torch.rand(batch, n, 2, generator=g, dtype=torch.float64) * 0.6 - 0.3,
                       1.0 + torch.rand(batch, n, 1, generator=g, dtype=torch.float64)], -1)
    quats = torch.randn(batch, n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(batch, n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.15, 0.05, 0.05], dtype=torch.float64) + 0.005
    opacities = torch.rand(batch, n, generator=g, dtype=torch.float64) * 0.999
    # A stack of four near-opaque discs: behind the second, pixels stop compositing (T < 1e-4).
    means[:, :4] = torch.tensor([[0.0, 0.0, 1.0 + 0.1 * k] for k in range(4)], dtype=torch.float64)
    scales[:, :4], opacities[:, :4] = 0.08, 0.995
    viewmats, ks = _camera(30.0, 18.0, 14.0, batch=batch)
    proj = project_gaussians(means, quats, scales, viewmats, ks, width, height)
    pairs = _enumerate_pairs(proj, opacities, width, height)
    expected = _pairs_by_definition(proj, opacities, width, height)
    assert len(expected) > 800
    assert list(zip(pairs.gaussian.tolist(), pairs.pixel.tolist())) == expected
    centre = [gaussian for gaussian, pixel in expected if pixel == 14 * width + 18]  # where the discs project
    assert 0 in centre and 1 in centre and 2 not in centre and 3 not in centre  # compositing stopped


def test_pairs_of_long_thin_float32_gaussians_are_all_listed():
    # Long, thin, tilted Gaussians in float32: near the ends of such an ellipse a row's span moves
    # fast with rounding, and every pixel the float32 alpha test passes must still be listed.
    g = torch.Generator().manual_seed(5)
    n, width, height = 12, 96, 64
    means = torch.cat([torch.rand(1, n, 2, generator=g) * 0.8 - 0.4, 1.0 + torch.rand(1, n, 1, generator=g)], -1)
    quats = torch.randn(1, n, 4, generator=g)
    scales = torch.stack([torch.full((1, n), 0.4), torch.full((1, n), 0.004), torch.full((1, n), 0.01)], -1)
    opacities = 0.3 + 0.6 * torch.rand(1, n, generator=g)
    viewmats, ks = _camera(60.0, 48.0, 32.0, dtype=torch.float32)
    proj = project_gaussians(means, quats, scales, viewmats, ks, width, height)
    pairs = _enumerate_pairs(proj, opacities, width, height)
    expected = _pairs_by_definition(proj, opacities, width, height)
    assert len(expected) > 2000
    assert list(zip(pairs.gaussian.tolist(), pairs.pixel.tolist())) == expected


def test_alpha_is_clamped_and_transmittance_stops_like_gsplat():
    # Three coincident opaque Gaussians: 0.999, then one more would leave T = 1e-6 <= 1e-4.
    out = _render([[0.0, 0.0, 1.0], [0.0, 0.0, 1.1], [0.0, 0.0, 1.2]], [[0.05] * 3] * 3, [1.0] * 3,
                  [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(out.rgb[0, 8, 8], torch.tensor([ALPHA_MAX, 0.0, 0.0], dtype=torch.float64))
    assert out.alpha[0, 8, 8, 0] == pytest.approx(ALPHA_MAX)


def test_culls_behind_the_camera():
    out = _render([[0.0, 0.0, -1.0], [0.0, 0.0, 0.005]], [[0.05] * 3] * 2, [1.0, 1.0], [[1.0, 1.0, 1.0]] * 2)
    assert out.alpha.abs().max() == 0 and out.rgb.abs().max() == 0


def test_two_hands_at_the_cpu_budget_size_render_with_gradients():
    scene = hand_like_scene(batch=1, width=160, height=120, per_face=1)
    kwargs = _requires_grad(scene)
    out = rasterize(**kwargs)  # "auto" on CPU tensors: the torch path
    assert 0.2 < out.alpha.mean().item() < 0.8, "the two hands should fill a good part of the frame"
    (out.rgb.sum() + out.depth.sum()).backward()
    assert math.isfinite(kwargs["means"].grad.abs().sum().item())


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("quats", (2, 5, 3), r"quats must have shape \(2, 5, 4\)"),
        ("opacities", (2, 5, 1), r"opacities must have shape \(2, 5\)"),
        ("colors", (2, 4, 3), r"colors must have shape \(2, 5, 3\)"),
        ("viewmats", (1, 4, 4), r"viewmats must have shape \(2, 4, 4\)"),
        ("Ks", (2, 4, 4), r"Ks must have shape \(2, 3, 3\)"),
        ("backgrounds", (2, 4), r"backgrounds must have shape \(2, 3\)"),
        ("means", (5, 3), r"means must have shape \(B, N, 3\)"),
    ],
)
def test_bad_shapes_are_named(name, shape, message):
    kwargs = {
        "means": torch.zeros(2, 5, 3), "quats": torch.zeros(2, 5, 4), "scales": torch.ones(2, 5, 3),
        "opacities": torch.ones(2, 5), "colors": torch.ones(2, 5, 3), "viewmats": torch.eye(4).expand(2, 4, 4),
        "Ks": torch.eye(3).expand(2, 3, 3), "width": 8, "height": 8, "backgrounds": torch.zeros(2, 3),
    }
    kwargs[name] = torch.zeros(shape)
    with pytest.raises(ValueError, match=message):
        rasterize(**kwargs)


def test_mixed_dtypes_and_gsplat_on_cpu_are_rejected():
    scene = hand_like_scene(batch=1, width=16, height=12, per_face=0)
    kwargs = scene.kwargs()
    with pytest.raises(ValueError, match="gsplat backend needs float32 CUDA tensors"):
        rasterize(**kwargs, backend="gsplat")
    kwargs["colors"] = kwargs["colors"].double()
    with pytest.raises(ValueError, match="colors is torch.float64"):
        rasterize(**kwargs)


def test_without_depth_the_torch_reference_returns_the_same_colour_and_no_depth():
    means, scales = [[0.0, 0.0, 1.0], [0.02, 0.0, 1.2]], [[0.05] * 3, [0.04] * 3]
    args = [torch.tensor(x, dtype=torch.float64)[None] for x in (means, scales, [0.7, 0.9], [[0.2, 0.5, 0.9], [1.0, 0.0, 0.0]])]
    quats = torch.tensor(IDENTITY_QUAT, dtype=torch.float64).expand(1, 2, 4)
    viewmats, ks = _camera(40.0, 8.5, 8.5)
    full, flat = (
        rasterize(args[0], quats, args[1], args[2], args[3], viewmats, ks, 16, 16, backend="torch", with_depth=d)
        for d in (True, False)
    )
    assert full.depth is not None and flat.depth is None
    assert torch.equal(full.rgb, flat.rgb) and torch.equal(full.alpha, flat.alpha)
