"""Mesh-guided Gaussians: fixed (face, barycentric) placements, attributes from a posed mesh, and their shading."""

from hand4dgs_ns.gaussians.layout import MeshGaussianLayout, make_layout
from hand4dgs_ns.gaussians.mesh_gaussians import (
    face_frames,
    gaussian_means,
    gaussian_quats,
    interpolate_vertex_attributes,
    vertex_normals,
)
from hand4dgs_ns.gaussians.shading import SphericalHarmonicLight

__all__ = [
    "MeshGaussianLayout",
    "SphericalHarmonicLight",
    "face_frames",
    "gaussian_means",
    "gaussian_quats",
    "interpolate_vertex_attributes",
    "make_layout",
    "vertex_normals",
]
