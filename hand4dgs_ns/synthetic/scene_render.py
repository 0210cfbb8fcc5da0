"""Shaded render of both hands and arms over the ray-cast room, with the hand-label mask.

One z-buffer pass renders every mesh of the frame together, so the hands occlude each other
and the arms correctly; the room's per-pixel depth then hides whatever lies behind the
table or a wall. Shading: Lambert from a point light fixed to the head (a head lamp, the
same light for every camera of a frame, so all views agree), a hemispherical ambient term
from the room, a faint specular sheen, and per-pixel skin detail; variants add distant
lights (sun, coloured fill), coloured light and Blinn-Phong highlights with a per-subject
gloss (:func:`relight`, :func:`with_gloss`). No shadows are cast. Meshes are closed and
wound outwards, so back faces are culled. Edges are antialiased by rasterising at
``supersample`` times the resolution: each pixel's colour is shaded once and blended over the
room by the fraction of its subpixels covered; the mask takes the label covering most of it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from typing_extensions import assert_never

from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER
from hand4dgs_ns.gaussians.mesh_gaussians import vertex_normals
from hand4dgs_ns.geometry.cameras import invert_rigid, transform_points
from hand4dgs_ns.synthetic.procedural import WaveNoise
from hand4dgs_ns.synthetic.rasterizer import rasterize_mesh
from hand4dgs_ns.synthetic.variants import LightingModel


@dataclass(frozen=True)
class SceneMesh:
    """The static part of a frame's meshes: topology, labels and surface attributes."""

    faces: Int[Tensor, "F 3"]
    """All triangles: left hand, right hand, then the arms."""
    face_labels: Int[Tensor, " F"]
    """Mask value of each triangle: 1 left hand, 2 right hand, 3 occluder (arms, objects)."""
    albedo: Float[Tensor, "N 3"]
    """sRGB albedo per vertex."""
    rest_points: Float[Tensor, "N 3"]
    """Per-vertex coordinates fixed to the surface, for the pixel detail noise."""
    detail: WaveNoise
    """Fine brightness noise evaluated on interpolated ``rest_points``."""
    gloss: Float[Tensor, " N"] | None = None
    """Per-vertex weight of Blinn-Phong highlights (1 skin, 0 cloth); only read by glossy lighting."""


def _ones() -> np.ndarray:
    return np.ones(3)


@dataclass(frozen=True)
class DistantLight:
    """A light far away (sun, window, a studio lamp): one direction and colour everywhere."""

    direction: Float[np.ndarray, " 3"]
    """Unit vector towards the light, world frame."""
    colour: Float[np.ndarray, " 3"]
    """Strength per channel."""


@dataclass(frozen=True)
class Lighting:
    """The head lamp, distant lights and the room's ambient light, for the hands and the room."""

    ambient: float
    """Ambient strength."""
    diffuse: float
    """Head lamp strength (0 = no head lamp)."""
    specular: float
    """Strength of the skin's sheen (or of its highlights when ``glossy``)."""
    tint: Float[np.ndarray, " 3"]
    """Colour of the light on the meshes (multiplies everything)."""
    lamp_colour: Float[np.ndarray, " 3"] = field(default_factory=_ones)
    """Colour of the head lamp (multiplies ``diffuse`` and the room's lamp light)."""
    distant: tuple[DistantLight, ...] = ()
    """Distant lights, shining on meshes and room alike."""
    gloss: float = 24.0
    """Blinn-Phong exponent: higher is a smaller, sharper highlight."""
    glossy: bool = False
    """Highlights from every light where it lights the surface, weighted by ``SceneMesh.gloss``;
    otherwise a faint sheen of the head lamp on every surface."""
    room_ambient: float = 0.45
    """Ambient strength on the room."""
    room_lamp: float = 0.75
    """Head lamp strength on the room (it falls off with distance there)."""


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A random but always well-exposed lighting."""
    return Lighting(
        ambient=float(rng.uniform(0.3, 0.45)),
        diffuse=float(rng.uniform(0.6, 0.8)),
        specular=float(rng.uniform(0.04, 0.1)),
        tint=np.clip(1.0 + rng.normal(0, 0.04, 3), 0.9, 1.1),
    )


def _hue(hue: float, saturation: float) -> np.ndarray:
    """A light colour of that hue with a mean of 1 over the channels (so brightness stays put)."""
    rgb = np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, 1.0))
    return rgb / rgb.mean()


def _from_above(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> np.ndarray:
    elevation = np.radians(rng.uniform(*elevation_deg))
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])


def relight(base: Lighting, model: LightingModel, rng: np.random.Generator) -> Lighting:
    """``base`` under another lighting model (draws from ``rng`` only for the other models)."""
    if model == "head-lamp":
        return base
    if model == "flat":
        # Overcast or a light box: no direction at all, so no shading cues but the ambient's.
        return replace(base, ambient=float(rng.uniform(0.85, 1.0)), diffuse=0.0, room_ambient=0.95, room_lamp=0.0)
    if model == "directional":
        # Sun through a window: one hard light from above, dark sides (no shadows are cast).
        sun = DistantLight(
            direction=_from_above(rng, (30.0, 70.0)),
            colour=np.array([1.0, 0.95, 0.86]) * rng.uniform(0.85, 1.1),
        )
        ambient = float(rng.uniform(0.12, 0.22))
        return replace(base, ambient=ambient, diffuse=0.0, distant=(sun,), room_ambient=ambient + 0.1, room_lamp=0.0)
    if model == "coloured":
        # Stage-like: a tinted key (the head lamp) and a fill of roughly the opposite hue from the side.
        hue = rng.uniform(0.0, 1.0)
        key = _hue(hue, rng.uniform(0.3, 0.6))
        fill = DistantLight(
            direction=_from_above(rng, (5.0, 35.0)),
            colour=_hue(hue + 0.5 + rng.uniform(-0.1, 0.1), rng.uniform(0.3, 0.6)) * rng.uniform(0.25, 0.4),
        )
        return replace(base, lamp_colour=key, distant=(fill,))
    assert_never(model)


def with_gloss(base: Lighting, rng: np.random.Generator) -> Lighting:
    """Blinn-Phong highlights with a random subject's gloss: oily skin (sharp, strong) to dry (broad, faint)."""
    strength = float(rng.uniform(0.12, 0.4))
    gloss = float(np.exp(rng.uniform(np.log(8.0), np.log(60.0))))
    return replace(base, specular=strength, gloss=gloss, glossy=True)


@dataclass(frozen=True)
class FrameRender:
    """A rendered batch of frames."""

    rgb: Float[Tensor, "B H W 3"]
    """sRGB colour in [0, 1]."""
    labels: UInt8[Tensor, "B H W"]
    """Mask: 0 background, 1 left hand, 2 right hand, 3 occluder."""
    depth: Float[Tensor, "B H W"]
    """Camera-frame depth of the nearest surface per pixel (meshes or room), to layer more meshes on top."""


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
) -> FrameRender:
    """Renders a batch of frames over a background with its depth: colour, label mask and depth."""
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
    nearest = torch.full((B * H * W,), float("inf")).scatter_reduce_(0, low, fragments.depth[front], reduce="amin")
    depth_map = torch.minimum(nearest.view(B, H, W), background_depth)

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

    # One gather of [normal, albedo, rest point (, gloss)] per corner, then one weighted sum.
    normals_cam = vertex_normals(verts_cam, scene.faces)
    glossy = lighting.glossy and scene.gloss is not None
    static = torch.cat([scene.albedo, scene.rest_points, *([scene.gloss[:, None]] if glossy else [])], dim=-1)
    channels = 3 + static.shape[-1]
    attrs = torch.cat([normals_cam, static.expand(B, -1, -1)], dim=-1).reshape(-1, channels)
    corners = (b[:, None] * verts_cam.shape[1] + scene.faces.index_select(0, face)).reshape(-1)
    mixed = (bary[..., None] * attrs.index_select(0, corners).view(-1, 3, channels)).sum(1)
    normal = F.normalize(mixed[:, :3], dim=-1)
    albedo, rest = mixed[:, 3:6], mixed[:, 6:9]
    fx, fy, cx, cy = K_ss[:, [0, 1, 0, 1], [0, 1, 2, 2]].index_select(0, b).unbind(dim=1)
    point = torch.stack([(x + 0.5 - cx) / fx * depth, (y + 0.5 - cy) / fy * depth, depth], dim=-1)

    light_cam = transform_points(w2c, light_world.float()[:, None])[:, 0]
    to_light = F.normalize(light_cam.index_select(0, b) - point, dim=-1)
    to_eye = F.normalize(-point, dim=-1)
    up_cam = w2c[:, :3, 2].index_select(0, b)
    hemisphere = 0.75 + 0.25 * (normal * up_cam).sum(-1)
    diffuse, specular = _lights(lighting, normal, to_light, to_eye, w2c[:, :3, :3], b, glossy)
    if glossy:
        specular = specular * mixed[:, 9:10]
    detail = 1.0 + 0.04 * scene.detail(rest)
    light = (lighting.ambient * hemisphere)[:, None] + diffuse
    colour = albedo * (light * detail[:, None]) + lighting.specular * specular
    colour = (colour * torch.from_numpy(lighting.tint).float()).clamp(0.0, 1.0)

    # Blend by coverage over the room.
    rgb = background.reshape(-1, 3).clone()
    cover = coverage.index_select(0, low)[:, None]
    rgb.index_copy_(0, low, colour * cover + rgb.index_select(0, low) * (1.0 - cover))
    return FrameRender(rgb=rgb.view(B, H, W, 3), labels=labels, depth=depth_map)


def light_tensor(values: np.ndarray) -> Tensor:
    """A light's colour or direction (numpy, as :class:`Lighting` keeps them) as a float tensor."""
    return torch.from_numpy(values).float()


def _lights(
    lighting: Lighting,
    normal: Float[Tensor, "P 3"],
    to_lamp: Float[Tensor, "P 3"],
    to_eye: Float[Tensor, "P 3"],
    w2c_rot: Float[Tensor, "B 3 3"],
    frame: Int[Tensor, " P"],
    glossy: bool,
) -> tuple[Float[Tensor, "P 3"], Float[Tensor, "P 3"]]:
    """Diffuse light and specular term per shaded point (camera frame; ``frame`` = each point's
    image in the batch), summed over the head lamp and the distant lights."""
    lambert = (normal * to_lamp).sum(-1).clamp(min=0.0)
    highlight = (normal * F.normalize(to_lamp + to_eye, dim=-1)).sum(-1).clamp(min=0.0) ** lighting.gloss
    if glossy:
        highlight = highlight * (lambert > 0)  # no highlight where the light is behind the surface
        highlight = highlight * lighting.diffuse
    diffuse = (lighting.diffuse * lambert)[:, None] * light_tensor(lighting.lamp_colour)
    specular = highlight[:, None] * light_tensor(lighting.lamp_colour)
    for light in lighting.distant:
        direction = (w2c_rot @ light_tensor(light.direction)).index_select(0, frame)
        cosine = (normal * direction).sum(-1).clamp(min=0.0)
        diffuse = diffuse + cosine[:, None] * light_tensor(light.colour)
        if glossy:
            half = F.normalize(direction + to_eye, dim=-1)
            shine = (normal * half).sum(-1).clamp(min=0.0) ** lighting.gloss * (cosine > 0)
            specular = specular + shine[:, None] * light_tensor(light.colour)
    return diffuse, specular
