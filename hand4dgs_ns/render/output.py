"""What the renderer returns, and the rasterisation constants both backends share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jaxtyping import Float
from torch import Tensor

EPS2D = 0.3
"""Added to the projected 2D covariance (px^2): gsplat's low-pass filter, about a 1-px footprint minimum."""
NEAR_PLANE = 0.01
"""Gaussians whose centre is closer than this (metres, camera z) are dropped."""
FAR_PLANE = 1e10
"""Gaussians whose centre is farther than this are dropped (gsplat's default: no far clipping)."""
TILE_SIZE = 16
"""gsplat's tile edge in pixels; the torch reference culls with the same tiles."""
ALPHA_MIN = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this does not touch that pixel."""
ALPHA_MAX = 0.999
"""Per-Gaussian alpha is clamped here (gsplat 1.4.0's kernels; Inria's 3DGS uses 0.99)."""
TRANSMITTANCE_MIN = 1e-4
"""Compositing at a pixel stops before the Gaussian that would take transmittance to this or below."""


@dataclass(frozen=True)
class RenderOutput:
    """Images rendered for a batch of B cameras, each H x W, pixel centres at integer + 0.5."""

    rgb: Float[Tensor, "B H W 3"]
    """Composited colour, background included: sum_i w_i c_i + (1 - alpha) * background."""
    alpha: Float[Tensor, "B H W 1"]
    """Accumulated opacity sum_i w_i = 1 - final transmittance, in [0, 1)."""
    depth: Optional[Float[Tensor, "B H W 1"]]
    """Expected camera-z depth sum_i w_i z_i / alpha (metres); 0 where nothing was hit. None when
    not asked for (``rasterize(..., with_depth=False)``)."""
