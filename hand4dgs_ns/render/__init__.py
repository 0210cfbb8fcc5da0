"""Gaussian rasterisation: one entry point, gsplat on CUDA and a pure-torch reference on CPU."""

from hand4dgs_ns.render.output import RenderOutput
from hand4dgs_ns.render.rasterize import rasterize

__all__ = ["RenderOutput", "rasterize"]
