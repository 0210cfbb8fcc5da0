"""gsplat (CUDA, float32) against the pure-torch reference (float64) on the same scenes.

Run with ``pytest tests/test_render_cuda.py -s`` to see the error table. The reference
composites exactly the (Gaussian, pixel) pairs gsplat does, in gsplat's order, so images
differ only by float32 rounding, plus the rare pixel where a Gaussian sits on the
alpha = 1/255 cut-off or the 1e-4 transmittance stop and the two precisions decide
differently (a jump of about 1/255).
Gradients are compared under a random upstream gradient, relative to the reference's scale.
The depth upstream gradient is kept to pixels with alpha > 0.5: expected depth D / alpha is
ill-conditioned where alpha is near 0, which would amplify float32 noise, not measure errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.render import rasterize
from hand4dgs_ns.render.scenes import hand_like_scene

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GRAD_INPUTS = ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds")

# Tolerances, about 10x to 30x the errors measured on an H100 (gsplat 1.4.0, torch 2.11):
# images max 3.4e-4, mean 5.4e-7; gradients relative max 7.3e-4, relative mean 7.4e-5.
# Colour and alpha: absolute, over all pixels; a max of 1e-2 leaves room for a few Gaussians
# on the 1/255 cut-off. Depth (metres): absolute, over pixels with alpha > 0.5, since where
# alpha is tiny one Gaussian on the cut-off flips the expected depth between 0 and its own.
IMAGE_MAX_ABS = {"rgb": 1e-2, "alpha": 1e-2, "depth": 1e-3}
IMAGE_MEAN_ABS = {"rgb": 1e-5, "alpha": 1e-5, "depth": 1e-5}
# Gradients: errors divided by the reference gradient's max abs / mean abs over the tensor.
GRAD_REL_MAX = 1e-2
GRAD_REL_MEAN = 1e-3


def _random_scene(batch: int, n: int, width: int, height: int, seed: int, shared_k: bool = False) -> dict:
    """Random Gaussians 1-3 m in front of randomly placed cameras, all partly in view.

    ``shared_k`` gives every camera the same intrinsics (the batched single-projection path).
    """
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    cam_rot = axis_angle_to_matrix(0.5 * torch.randn(batch, 3, generator=g, dtype=d))
    cam_pos = torch.randn(batch, 3, generator=g, dtype=d)
    focal = width * (0.8 + 0.4 * torch.rand(batch, generator=g, dtype=d))
    ks = torch.zeros(batch, 3, 3, dtype=d)
    ks[:, 0, 0], ks[:, 1, 1] = focal, focal * (0.95 + 0.1 * torch.rand(batch, generator=g, dtype=d))
    ks[:, 0, 2] = width / 2 + 4 * torch.randn(batch, generator=g, dtype=d)
    ks[:, 1, 2] = height / 2 + 4 * torch.randn(batch, generator=g, dtype=d)
    ks[:, 2, 2] = 1.0
    if shared_k:
        ks[:], focal[:] = ks[0], focal[0]
    # Points in camera frames (slightly wider than the view), moved to the world.
    depth = 1.0 + 2.0 * torch.rand(batch, n, 1, generator=g, dtype=d)
    xy = (torch.rand(batch, n, 2, generator=g, dtype=d) - 0.5) * 1.2 * torch.tensor([width, height], dtype=d)
    p_cam = torch.cat([xy / focal[:, None, None] * depth, depth], dim=-1)
    means = p_cam @ cam_rot + cam_pos[:, None, :]  # p_world = R^T p_cam + c, for w2c = [R | -R c]
    viewmats = torch.eye(4, dtype=d).repeat(batch, 1, 1)
    viewmats[:, :3, :3] = cam_rot
    viewmats[:, :3, 3] = -(cam_rot @ cam_pos[..., None])[..., 0]
    scales = torch.exp(math.log(0.004) + math.log(12.0) * torch.rand(batch, n, 3, generator=g, dtype=d))
    return {
        "means": means,
        "quats": torch.randn(batch, n, 4, generator=g, dtype=d),
        "scales": scales,
        "opacities": 0.05 + 0.95 * torch.rand(batch, n, generator=g, dtype=d),
        "colors": torch.rand(batch, n, 3, generator=g, dtype=d),
        "viewmats": viewmats,
        "Ks": ks,
        "backgrounds": torch.rand(batch, 3, generator=g, dtype=d),
        "width": width,
        "height": height,
    }


def _hand_scene(batch: int, width: int, height: int, seed: int) -> dict:
    return hand_like_scene(batch=batch, width=width, height=height, per_face=2, seed=seed, dtype=torch.float64).kwargs()


SCENES = {
    "random B1 N600": lambda: _random_scene(1, 600, 96, 72, seed=0),
    "random B3 N2000": lambda: _random_scene(3, 2000, 100, 75, seed=1),
    "random B4 N20000": lambda: _random_scene(4, 20000, 160, 120, seed=2),
    "random B4 N20000 shared K": lambda: _random_scene(4, 20000, 160, 120, seed=5, shared_k=True),
    "hands B1": lambda: _hand_scene(1, 160, 120, seed=3),
    "hands B4": lambda: _hand_scene(4, 200, 150, seed=4),
}


def _on_cuda(scene: dict, dtype: torch.dtype) -> dict:
    return {k: (v.to("cuda", dtype) if torch.is_tensor(v) else v) for k, v in scene.items()}


def _render_with_grads(scene: dict, dtype: torch.dtype, backend: str, upstream: dict):
    inputs = _on_cuda(scene, dtype)
    for name in GRAD_INPUTS:
        inputs[name] = inputs[name].clone().requires_grad_(True)
    out = rasterize(**inputs, backend=backend)
    loss = sum((getattr(out, k) * upstream[k].to("cuda", dtype)).sum() for k in ("rgb", "alpha", "depth"))
    loss.backward()
    images = {k: getattr(out, k).detach().double().cpu() for k in ("rgb", "alpha", "depth")}
    grads = {k: inputs[k].grad.double().cpu() for k in GRAD_INPUTS}
    return images, grads


def _print_table(title: str, rows: list[tuple[str, float, float, float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'quantity':<22}{'max abs err':>13}{'mean abs err':>14}{'ref max abs':>13}{'ref mean abs':>14}")
    for name, max_err, mean_err, ref_max, ref_mean in rows:
        print(f"  {name:<22}{max_err:>13.3e}{mean_err:>14.3e}{ref_max:>13.3e}{ref_mean:>14.3e}")


@pytest.mark.parametrize("scene_name", list(SCENES))
def test_gsplat_matches_torch_reference(scene_name: str):
    scene = SCENES[scene_name]()
    b, h, w = scene["means"].shape[0], scene["height"], scene["width"]
    g = torch.Generator().manual_seed(123)
    upstream = {k: torch.randn(b, h, w, c, generator=g, dtype=torch.float64) for k, c in
                (("rgb", 3), ("alpha", 1), ("depth", 1))}

    with torch.no_grad():
        covered = rasterize(**_on_cuda(scene, torch.float64), backend="torch").alpha.cpu() > 0.5
    upstream["depth"] = upstream["depth"] * covered
    ref_img, ref_grad = _render_with_grads(scene, torch.float64, "torch", upstream)
    gs_img, gs_grad = _render_with_grads(scene, torch.float32, "gsplat", upstream)

    rows, failures = [], []
    coverage = covered.double().mean().item()
    assert coverage > 0.05, f"{scene_name}: the scene hardly covers the image ({coverage:.1%})"
    for k in ("rgb", "alpha", "depth"):
        mask = covered.expand_as(ref_img[k]) if k == "depth" else torch.ones_like(ref_img[k], dtype=torch.bool)
        err, ref = (gs_img[k] - ref_img[k]).abs()[mask], ref_img[k].abs()[mask]
        label = "depth (alpha>0.5)" if k == "depth" else k
        rows.append((label, err.max().item(), err.mean().item(), ref.max().item(), ref.mean().item()))
        if err.max() > IMAGE_MAX_ABS[k] or err.mean() > IMAGE_MEAN_ABS[k]:
            failures.append(f"{k}: max {err.max():.2e}, mean {err.mean():.2e}")
    for k in GRAD_INPUTS:
        err = (gs_grad[k] - ref_grad[k]).abs()
        ref_max, ref_mean = ref_grad[k].abs().max().item(), ref_grad[k].abs().mean().item()
        rows.append((f"d/d {k}", err.max().item(), err.mean().item(), ref_max, ref_mean))
        if ref_max == 0:
            failures.append(f"d/d {k}: the reference gradient is zero")
        elif err.max() / ref_max > GRAD_REL_MAX or err.mean() / ref_mean > GRAD_REL_MEAN:
            failures.append(f"d/d {k}: max {err.max() / ref_max:.2e}, mean {err.mean() / ref_mean:.2e} (relative)")
    _print_table(f"{scene_name}: gsplat float32 vs torch reference float64, {w}x{h}, alpha>0.5 on {coverage:.0%}", rows)
    assert not failures, f"{scene_name}: " + "; ".join(failures)


def test_auto_backend_uses_gsplat_on_cuda():
    scene = _on_cuda(_hand_scene(2, 64, 48, 0), torch.float32)
    auto = rasterize(**scene)
    explicit = rasterize(**scene, backend="gsplat")
    assert torch.equal(auto.rgb, explicit.rgb) and torch.equal(auto.depth, explicit.depth)


def test_gsplat_without_depth_gives_the_same_colour_alpha_and_gradients():
    scene = _on_cuda(_hand_scene(2, 64, 48, 0), torch.float32)
    results = []
    for with_depth in (True, False):
        inputs = {k: v.clone().requires_grad_(True) if k in GRAD_INPUTS else v for k, v in scene.items()}
        out = rasterize(**inputs, backend="gsplat", with_depth=with_depth)
        assert (out.depth is not None) == with_depth
        (out.rgb.square().sum() + out.alpha.sum()).backward()
        results.append((out.rgb.detach(), out.alpha.detach(), {k: inputs[k].grad for k in GRAD_INPUTS}))
    (rgb, alpha, grads), (rgb3, alpha3, grads3) = results
    torch.testing.assert_close(rgb3, rgb, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alpha3, alpha, atol=1e-6, rtol=1e-5)
    for k in GRAD_INPUTS:
        torch.testing.assert_close(grads3[k], grads[k], atol=1e-5, rtol=1e-4)
