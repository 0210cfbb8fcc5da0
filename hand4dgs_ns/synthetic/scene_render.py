"""Shaded render of both hands and arms over the ray-cast room, with the hand-label mask.

One z-buffer pass renders every mesh of the frame together, so the hands occlude each other
and the arms correctly; the room's per-pixel depth then hides whatever lies behind the
table or a wall. Shading: Lambert from a point light fixed to the head (a head lamp, the
same light for every camera of a frame, so all views agree), a hemispherical ambient term
from the room, a faint specular sheen, and per-pixel skin detail. Meshes are closed and
wound outwards, so back faces are culled. Edges are antialiased by rasterising at
``supersample`` times the resolution: each pixel's colour is shaded once and blended over the
room by the fraction of its subpixels covered; the mask takes the label covering most of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER
from hand4dgs_ns.geometry.cameras import invert_rigid, transform_points
from hand4dgs_ns.synthetic.appearance import vertex_normals
from hand4dgs_ns.synthetic.procedural import WaveNoise
from hand4dgs_ns.synthetic.rasterizer import rasterize_mesh


@dataclass(frozen=True)
class SceneMesh:
    """The static part of a frame's meshes: topology, labels and surface attributes."""

    faces: Int[Tensor, "F 3"]
    """All triangles: left hand, right hand, then the arms."""
    face_labels: Int[Tensor, " F"]
    """Mask value of each triangle: 1 left hand, 2 right hand, 0 scenery (arms)."""
    albedo: Float[Tensor, "N 3"]
    """sRGB albedo per vertex."""
    rest_points: Float[Tensor, "N 3"]
    """Per-vertex coordinates fixed to the surface, for the pixel detail noise."""
    detail: WaveNoise
    """Fine brightness noise evaluated on interpolated ``rest_points``."""


@dataclass(frozen=True)
class Lighting:
    """The head lamp and the room's ambient light."""

    ambient: float
    """Ambient strength."""
    diffuse: float
    """Head lamp strength."""
    specular: float
    """Strength of the skin's sheen."""
    tint: Float[np.ndarray, " 3"]
    """Colour of the light (multiplies everything)."""


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A random but always well-exposed lighting."""
    return Lighting(
        ambient=float(rng.uniform(0.3, 0.45)),
        diffuse=float(rng.uniform(0.6, 0.8)),
        specular=float(rng.uniform(0.04, 0.1)),
        tint=np.clip(1.0 + rng.normal(0, 0.04, 3), 0.9, 1.1),
    )


def render_scene(
    scene: SceneMesh,
    lighting: Lighting,
    verts_world: Float[Tensor, "B N 3"],
    c2w: Float[Tensor, "B 4 4"],
    K: Float[Tensor, "B 3 3"],
    light_world: Float[Tensor, "B 3"],
    background: Float[Tensor, "B H W 3"],
    background_depth: Float[Tensor, "B H W"],
    supersample: int = 2,
) -> tuple[Float[Tensor, "B H W 3"], Int[Tensor, "B H W"]]:
    """Renders a batch of frames: sRGB colour in [0, 1] and the uint8 hand-label mask."""
    B, H, W, _ = background.shape
    ss = supersample
    w2c = invert_rigid(c2w.float())
    verts_cam = transform_points(w2c, verts_world.float())
    K_ss = K.float().clone()
    K_ss[:, :2] *= ss
    fragments = rasterize_mesh(verts_cam, scene.faces, K_ss, W * ss, H * ss, cull_backfaces=True)

    # Covered subpixels in front of the room (the room hides what is under the table).
    b, y, x = fragments.indices()
    low = (b * H + torch.div(y, ss, rounding_mode="floor")) * W + torch.div(x, ss, rounding_mode="floor")
    # index_select rather than tensor[index]: measured 5x faster for row gathers on CPU.
    front = fragments.depth < background_depth.reshape(-1).index_select(0, low)
    low, face = low[front], fragments.faces[front]
    # Coverage and labels count every subpixel; the colour is shaded once per pixel, at its
    # first covered subpixel, as multisample antialiasing does (a quarter of the work at 2x2).
    weight = 1.0 / (ss * ss)
    coverage = torch.zeros(B * H * W).index_add_(0, low, torch.full(low.shape, weight))
    slots = MASK_OCCLUDER + 2  # "no face" and every label
    votes = torch.zeros(B * H * W * slots).index_add_(
        0, low * slots + scene.face_labels.index_select(0, face) + 1, torch.ones(low.shape)
    )
    votes = votes.view(B, H, W, slots)
    votes[..., 0] = ss * ss - votes[..., 1:].sum(-1)  # background
    labels = (votes.argmax(dim=-1) - 1).clamp(min=0).to(torch.uint8)

    order = torch.arange(low.numel())
    first = torch.full((B * H * W,), low.numel(), dtype=torch.long).scatter_reduce_(0, low, order, reduce="amin")
    chosen = first[first < low.numel()]
    pick = front.nonzero().squeeze(1).index_select(0, chosen)
    b, y, x, low = (
        b.index_select(0, pick),
        y.index_select(0, pick),
        x.index_select(0, pick),
        low.index_select(0, chosen),
    )
    depth, face = fragments.depth.index_select(0, pick), fragments.faces.index_select(0, pick)
    bary = fragments.barycentrics(pick)

    # One gather of [normal, albedo, rest point] per corner, then one weighted sum.
    normals_cam = vertex_normals(verts_cam, scene.faces)
    static = torch.cat([scene.albedo, scene.rest_points], dim=-1)
    attrs = torch.cat([normals_cam, static.expand(B, -1, -1)], dim=-1).reshape(-1, 9)
    corners = (b[:, None] * verts_cam.shape[1] + scene.faces.index_select(0, face)).reshape(-1)
    mixed = (bary[..., None] * attrs.index_select(0, corners).view(-1, 3, 9)).sum(1)
    normal = F.normalize(mixed[:, :3], dim=-1)
    albedo, rest = mixed[:, 3:6], mixed[:, 6:9]
    fx, fy, cx, cy = K_ss[:, [0, 1, 0, 1], [0, 1, 2, 2]].index_select(0, b).unbind(dim=1)
    point = torch.stack([(x + 0.5 - cx) / fx * depth, (y + 0.5 - cy) / fy * depth, depth], dim=-1)

    light_cam = transform_points(w2c, light_world.float()[:, None])[:, 0]
    to_light = F.normalize(light_cam.index_select(0, b) - point, dim=-1)
    to_eye = F.normalize(-point, dim=-1)
    lambert = (normal * to_light).sum(-1).clamp(min=0.0)
    sheen = (normal * F.normalize(to_light + to_eye, dim=-1)).sum(-1).clamp(min=0.0) ** 24
    up_cam = w2c[:, :3, 2].index_select(0, b)
    hemisphere = 0.75 + 0.25 * (normal * up_cam).sum(-1)
    shade = lighting.ambient * hemisphere + lighting.diffuse * lambert
    detail = 1.0 + 0.04 * scene.detail(rest)
    colour = albedo * (shade * detail)[:, None] + lighting.specular * sheen[:, None]
    colour = (colour * torch.from_numpy(lighting.tint).float()).clamp(0.0, 1.0)

    # Blend by coverage over the room.
    rgb = background.reshape(-1, 3).clone()
    cover = coverage.index_select(0, low)[:, None]
    rgb.index_copy_(0, low, colour * cover + rgb.index_select(0, low) * (1.0 - cover))
    return rgb.view(B, H, W, 3), labels
