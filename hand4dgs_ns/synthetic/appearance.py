"""Procedural skin: a per-subject tone, per-vertex albedo (palms, creases, nails, blotches) and pixel detail,
with optional marks (veins, freckles, deeper creases, nail edges).

Colours are sRGB albedo in [0, 1]. Regions come from the template's rest pose and skinning
weights rather than UVs, so any hand template works: the palm side from the vertex normals
against the palm frame's normal, creases where skinning weight is shared between bones
(over the joints), nails on the back of the last ~1 cm of each finger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from hand4dgs_ns.gaussians.mesh_gaussians import vertex_normals
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.synthetic.hand_rig import HandRig
from hand4dgs_ns.synthetic.procedural import WaveNoise, wave_noise

# Reference tones from very light to very dark skin (sRGB), sampled by interpolation.
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.91, 0.72, 0.60],
        [0.80, 0.60, 0.46],
        [0.66, 0.46, 0.33],
        [0.50, 0.33, 0.23],
        [0.33, 0.21, 0.15],
    ]
)
_NAIL_TINT = np.array([0.93, 0.78, 0.76])
_NAIL_LENGTH = 0.011


@dataclass(frozen=True)
class SkinLook:
    """One subject's skin colours and texture noise."""

    base: Float[np.ndarray, " 3"]
    """Back-of-hand albedo."""
    palm: Float[np.ndarray, " 3"]
    """Palm albedo (lighter and pinker, markedly so for darker skin)."""
    crease_depth: float
    """How much darker the skin gets over the joints (0..1)."""
    blotch: WaveNoise
    """Low-frequency colour variation over the hand."""
    detail: WaveNoise
    """Fine brightness variation evaluated per pixel on the rest-pose surface."""


def sample_skin(rng: np.random.Generator) -> SkinLook:
    """A random subject's skin."""
    position = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(_SKIN_TONES) - 1)
    base = _SKIN_TONES[low] * (1 - (position - low)) + _SKIN_TONES[high] * (position - low)
    base = np.clip(
        base * rng.uniform(0.94, 1.04) + rng.normal(0, 0.015, 3) + np.array([0.02, 0.0, -0.01]) * rng.normal(), 0, 1
    )
    darkness = position / (len(_SKIN_TONES) - 1)
    palm_target = np.array([0.93, 0.70, 0.62])
    palm = base + (palm_target - base) * (0.2 + 0.45 * darkness)
    return SkinLook(
        base=base,
        palm=np.clip(palm, 0, 1),
        crease_depth=float(rng.uniform(0.2, 0.35)),
        blotch=wave_noise(rng, 40.0, 160.0),
        detail=wave_noise(rng, 300.0, 1200.0),
    )


@dataclass(frozen=True)
class SkinMarks:
    """Optional skin detail of one subject: veins, freckles, deeper creases, pale nail tips."""

    veins: WaveNoise
    """Noise whose zero crossings, stretched along the fingers, draw the veins on the back of the hand."""
    vein_depth: float
    """How much darker and bluer the skin is over a vein (0..1)."""
    freckles: WaveNoise
    """High-frequency noise whose peaks are freckles."""
    freckle_amount: float
    """Fraction of the back of the hand (roughly) covered by freckles."""
    crease_boost: float
    """Extra darkening over the joints, on top of the base crease depth."""
    nail_edge: float
    """Whiteness of the nails' free edges (0..1)."""


def sample_skin_marks(rng: np.random.Generator, look: SkinLook) -> SkinMarks:
    """A random subject's skin detail; veins and freckles show less on darker skin, as they do."""
    lightness = float(np.clip((look.base.mean() - 0.2) / 0.6, 0.0, 1.0))
    return SkinMarks(
        veins=wave_noise(rng, 100.0, 250.0, count=8),
        vein_depth=float(rng.uniform(0.3, 0.5)) * (0.4 + 0.6 * lightness),
        freckles=wave_noise(rng, 1500.0, 2500.0, count=16),
        freckle_amount=float(rng.uniform(0.0, 0.25)) * lightness,
        crease_boost=float(rng.uniform(0.15, 0.3)),
        nail_edge=float(rng.uniform(0.4, 0.8)),
    )


@dataclass(frozen=True)
class _Regions:
    """Soft per-vertex masks of the rest-pose hand (0..1)."""

    palmar: Tensor
    dorsal: Tensor
    crease: Tensor
    nail: Tensor
    to_tip: Tensor


def _regions(template: HandTemplate, rig: HandRig, verts: Tensor) -> _Regions:
    normals = vertex_normals(verts, template.faces)
    n = rig.frame[:, 2]
    shared = 1.0 - template.weights.float().max(dim=1).values
    tips = verts[template.tip_vertex_ids]  # (5, 3)
    to_tip = (verts[:, None] - tips[None]).norm(dim=-1).min(dim=1).values
    dorsal = torch.clamp(-(normals @ n) * 2.0 - 0.4, 0.0, 1.0)
    return _Regions(
        palmar=torch.clamp((normals @ n) * 1.6, 0.0, 1.0),
        dorsal=dorsal,
        crease=(shared / shared.max().clamp(min=1e-6)) ** 2,
        nail=torch.clamp((_NAIL_LENGTH - to_tip) / 0.003, 0.0, 1.0) * dorsal,
        to_tip=to_tip,
    )


def hand_albedo(
    template: HandTemplate, rig: HandRig, look: SkinLook, marks: SkinMarks | None = None
) -> Float[Tensor, "V 3"]:
    """Per-vertex albedo of one hand in the template's topology, with ``marks`` if given."""
    verts = template.v_template.float()
    regions = _regions(template, rig, verts)
    palmar = regions.palmar
    albedo = (
        torch.from_numpy(look.base).float() * (1 - palmar[:, None])
        + torch.from_numpy(look.palm).float() * palmar[:, None]
    )
    albedo = albedo * (1.0 - look.crease_depth * regions.crease[:, None])

    blotch = look.blotch(verts)
    albedo = albedo * (1.0 + 0.05 * blotch[:, None]) + torch.tensor([0.015, -0.005, -0.01]) * blotch[:, None]

    nail = regions.nail
    nail_colour = 0.45 * torch.from_numpy(look.base).float() + 0.55 * torch.from_numpy(_NAIL_TINT).float()
    albedo = albedo * (1 - nail[:, None]) + nail_colour * nail[:, None]
    if marks is not None:
        albedo = _marked(albedo, verts, rig, regions, marks)
    return albedo.clamp(0.0, 1.0)


def _marked(albedo: Tensor, verts: Tensor, rig: HandRig, regions: _Regions, marks: SkinMarks) -> Tensor:
    """``albedo`` with veins, freckles, deeper creases and nail edges. Per vertex (about 4 mm
    apart), so the marks are soft, as they are at egocentric resolutions."""
    s, f, n = rig.frame.unbind(dim=1)
    wrist, knuckles = rig.rest_joints[0], rig.rest_joints[[5, 9, 13, 17]].mean(0)
    along = ((verts - wrist) @ f) / ((knuckles - wrist) @ f)
    # Veins run from the wrist towards the knuckles and fade before them and over the palm sides.
    back = regions.dorsal * torch.clamp((along + 0.2) * 4.0, 0.0, 1.0) * torch.clamp((0.9 - along) * 5.0, 0.0, 1.0)
    stretched = torch.stack([verts @ s, 0.25 * (verts @ f), verts @ n], dim=-1)
    vein = torch.exp(-((marks.veins(stretched) / 0.3) ** 2)) * back
    albedo = albedo * (1.0 - marks.vein_depth * vein[:, None] * torch.tensor([0.9, 0.7, 0.3]))

    spots = torch.clamp((marks.freckles(verts) - 2.5 + 5.0 * marks.freckle_amount) / 0.4, 0.0, 1.0)
    freckle = spots * regions.dorsal * (1.0 - regions.nail)
    albedo = albedo * (1.0 - 0.35 * freckle[:, None] * torch.tensor([0.7, 0.85, 1.0]))

    albedo = albedo * (1.0 - marks.crease_boost * regions.crease[:, None] ** 1.5)
    edge = torch.clamp((0.004 - regions.to_tip) / 0.002, 0.0, 1.0) * regions.nail * marks.nail_edge
    return albedo * (1.0 - edge[:, None]) + torch.tensor([0.96, 0.93, 0.9]) * edge[:, None]
