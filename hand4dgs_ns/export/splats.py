"""Gaussians as a PLY in the layout of 3D Gaussian Splatting (Kerbl et al.), which splat viewers open.

One vertex per Gaussian with float32 properties, binary little endian::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

stored as the optimiser of 3DGS holds them, not as they render: ``f_dc`` the degree-0
spherical-harmonic coefficients, ``(colour - 0.5) / C0``; ``opacity`` the logit; ``scale_*``
natural logs of the standard deviations (metres); ``rot_*`` the unit quaternion ``wxyz``; the
normals are zeros. Positions keep the package's world frame (metres, OpenCV-style axes, so
"up" is -y). :func:`splats_ply` and :func:`read_splats_ply` are each other's inverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float
from plyfile import PlyData, PlyElement

SH_C0 = 0.28209479177387814
"""The degree-0 real spherical harmonic, ``1 / (2 sqrt(pi))``."""
OPACITY_EPS = 1e-6
"""Opacities are clamped to ``[eps, 1 - eps]`` before the logit, so it stays finite."""
PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip


@dataclass(frozen=True)
class Splats:
    """N Gaussians as they render (the fields of a prediction for one frame), float32 host arrays."""

    means: Float[np.ndarray, "N 3"]
    """Centres, world frame (metres)."""
    quats: Float[np.ndarray, "N 4"]
    """Rotations, wxyz (need not be normalised)."""
    scales: Float[np.ndarray, "N 3"]
    """Standard deviations along the local axes (metres, positive)."""
    opacities: Float[np.ndarray, " N"]
    """In [0, 1]."""
    colors: Float[np.ndarray, "N 3"]
    """RGB, typically in [0, 1]."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,), "colors": (n, 3)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"Splats: {name} has shape {getattr(self, name).shape}, expected {shape}")

    def visible(self) -> Splats:
        """The Gaussians with a non-zero opacity (an absent hand's Gaussians have opacity 0)."""
        keep = self.opacities > 0
        return Splats(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def splats_ply(splats: Splats) -> PlyData:
    """The visible Gaussians of ``splats`` (opacity > 0) as a binary little-endian 3DGS PLY."""
    s = splats.visible()
    opacity = np.clip(s.opacities.astype(np.float64), OPACITY_EPS, 1.0 - OPACITY_EPS)
    quats = s.quats.astype(np.float64)
    columns = [
        s.means,
        np.zeros_like(s.means),
        (s.colors.astype(np.float64) - 0.5) / SH_C0,
        np.log(opacity / (1.0 - opacity))[:, None],
        np.log(s.scales.astype(np.float64)),
        quats / np.linalg.norm(quats, axis=1, keepdims=True),
    ]
    values = np.ascontiguousarray(np.concatenate([np.asarray(c, "<f4") for c in columns], axis=1))
    vertex = values.view(np.dtype([(name, "<f4") for name in PROPERTIES]))[:, 0]  # one record per row, no copy
    return PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")


def write_splats_ply(path: Path, splats: Splats) -> None:
    """Writes :func:`splats_ply` of ``splats`` to ``path``."""
    splats_ply(splats).write(str(path))


def read_splats_ply(path: Path) -> Splats:
    """The Gaussians of a 3DGS PLY (degree-0 colours only), as they render: the inverse of :func:`splats_ply`."""
    vertex = PlyData.read(str(path))["vertex"]

    def stack(*names: str) -> np.ndarray:
        return np.stack([np.asarray(vertex[name], np.float64) for name in names], axis=1)

    opacity_logit = np.asarray(vertex["opacity"], np.float64)
    return Splats(
        means=stack("x", "y", "z").astype(np.float32),
        quats=stack("rot_0", "rot_1", "rot_2", "rot_3").astype(np.float32),
        scales=np.exp(stack("scale_0", "scale_1", "scale_2")).astype(np.float32),
        opacities=(1.0 / (1.0 + np.exp(-opacity_logit))).astype(np.float32),
        colors=(stack("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5).astype(np.float32),
    )
