"""The one rendering entry point: gsplat on CUDA tensors, the pure-torch reference elsewhere.

Every camera renders its own set of N Gaussians (each frame has its own posed hands).
Cameras use OpenCV axes; ``viewmats`` are world-to-camera. Both backends share gsplat's
semantics (see :mod:`hand4dgs_ns.render.output` for the constants), so they agree up to
float32 rounding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from typing_extensions import assert_never

from hand4dgs_ns.render.output import RenderOutput
from hand4dgs_ns.render.torch_rasterizer import _rasterize_torch

Backend = Literal["auto", "gsplat", "torch"]


def rasterize(
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
    backend: Backend = "auto",
    shared_intrinsics: bool | None = None,
    with_depth: bool = True,
) -> RenderOutput:
    """Render B images, camera b showing Gaussians ``[b]``; differentiable in all but ``Ks``.

    Args:
        means: Gaussian centres, world frame (metres).
        quats: wxyz rotations (need not be normalised).
        scales: standard deviations along the Gaussian's local axes (metres, positive).
        opacities: in [0, 1].
        colors: RGB, typically in [0, 1].
        viewmats: world-to-camera transforms, OpenCV axes.
        Ks: pinhole intrinsics in pixels.
        width, height: image size in pixels.
        backgrounds: colour behind the Gaussians per camera; black when None.
        backend: "auto" picks gsplat for CUDA tensors and the torch reference otherwise.
        shared_intrinsics: whether all ``Ks`` are equal, if the caller knows (gsplat then projects
            every camera in one launch); None compares them, which makes the host wait for the GPU.
        with_depth: also render the expected depth (False: ``depth`` is None and gsplat
            composites three channels instead of four, as a training step needs).
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)
    args = (means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "torch":
        out = _rasterize_torch(*args)
        return out if with_depth else replace(out, depth=None)
    if backend == "gsplat":
        if not means.is_cuda or means.dtype != torch.float32:
            raise ValueError(
                f"rasterize: the gsplat backend needs float32 CUDA tensors, got {means.dtype} on {means.device}; "
                "use backend='torch' or move the inputs to the GPU."
            )
        from hand4dgs_ns.render.gsplat_rasterizer import _rasterize_gsplat

        return _rasterize_gsplat(*args, shared_intrinsics=shared_intrinsics, with_depth=with_depth)
    assert_never(backend)


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    backgrounds: Tensor | None,
) -> None:
    """Raise ValueError naming the first argument whose shape, dtype or device does not fit."""
    if means.ndim != 3 or means.shape[-1] != 3:
        raise ValueError(f"rasterize: means must have shape (B, N, 3), got {tuple(means.shape)}.")
    b, n = means.shape[:2]
    expected = {
        "quats": (quats, (b, n, 4)),
        "scales": (scales, (b, n, 3)),
        "opacities": (opacities, (b, n)),
        "colors": (colors, (b, n, 3)),
        "viewmats": (viewmats, (b, 4, 4)),
        "Ks": (Ks, (b, 3, 3)),
    }
    if backgrounds is not None:
        expected["backgrounds"] = (backgrounds, (b, 3))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"rasterize: {name} must have shape {shape} to match means {tuple(means.shape)}, "
                f"got {tuple(tensor.shape)}."
            )
        if tensor.device != means.device or tensor.dtype != means.dtype:
            raise ValueError(
                f"rasterize: {name} is {tensor.dtype} on {tensor.device} but means is "
                f"{means.dtype} on {means.device}; pass all inputs with one dtype on one device."
            )
    if not means.dtype.is_floating_point:
        raise ValueError(f"rasterize: inputs must be floating point, got {means.dtype}.")
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise ValueError(f"rasterize: width and height must be positive integers, got {width} x {height}.")
