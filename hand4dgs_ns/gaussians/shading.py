"""Diffuse shading of the hand's Gaussians: albedo times the irradiance at each Gaussian's normal.

Without it, a Gaussian's colour must carry the light as well as the skin, so the light on a
turning hand (a lit back, a dark palm under a sun from above, a head lamp's falloff across the
fingers) has to be predicted again for every pose. Shading takes the light out of the colours:
irradiance from distant light is smooth over the sphere of normals, and nine real
spherical-harmonic coefficients per colour channel (bands 0-2) represent it to within a few
per cent (Ramamoorthi and Hanrahan, "An Efficient Representation for Irradiance Environment
Maps", SIGGRAPH 2001). The basis is nerfstudio's (real, orthonormal; order Y00; Y1-1 (y), Y10 (z),
Y11 (x); Y2-2 (xy), Y2-1 (yz), Y20, Y21 (xz), Y22 (x^2 - y^2)).

Two lights are learned, as real footage has both: one fixed in the world (sun, windows, room
lamps) and one that moves with the camera (a head-mounted lamp, or the ambient light seen from
where the wearer looks). Normals and directions follow the package's conventions: world frame,
camera axes OpenCV.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor, nn

SH_LEVELS = 3
"""Bands 0, 1 and 2: nine coefficients per colour channel."""


def sh_basis(n: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 9"]:
    """The real SH basis of bands 0-2 at unit directions ``n``."""
    return components_from_spherical_harmonics(SH_LEVELS, n)


class SphericalHarmonicLight(nn.Module):
    """Learned distant light on the hands: one SH light fixed in the world, one moving with the camera.

    It starts as uniform white light of irradiance 1 (the world light's band 0 only), so a model
    with shading starts rendering exactly what one without it would.
    """

    def __init__(self) -> None:
        super().__init__()
        world = torch.zeros(SH_LEVELS**2, 3)
        world[0] = 1.0 / sh_basis(torch.tensor([0.0, 0.0, 1.0]))[0]  # band 0 is constant over the sphere
        self.world = nn.Parameter(world)
        self.camera = nn.Parameter(torch.zeros(SH_LEVELS**2, 3))

    def forward(self, normals_world: Float[Tensor, "B g 3"], c2w: Float[Tensor, "B 4 4"]) -> Float[Tensor, "B g 3"]:
        """Irradiance at world-frame unit normals, seen by frames with camera-to-world ``c2w``."""
        # Row vectors: n_cam = R^T n_world  <=>  n_cam^T = n_world^T R.
        normals_camera = normals_world @ c2w[:, :3, :3]
        light = sh_basis(normals_world) @ self.world + sh_basis(normals_camera) @ self.camera
        return light.clamp(min=0.0)  # the sum of two lights is never negative; their SH fit can be
