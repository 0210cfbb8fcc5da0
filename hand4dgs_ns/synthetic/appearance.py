"""Procedural skin: a per-subject tone, per-vertex albedo (palms, creases, nails, blotches) and pixel detail.

Colours are sRGB albedo in [0, 1]. Regions come from the template's rest pose and skinning
weights rather than UVs, so any hand template works: the palm side from the vertex normals
against the palm frame's normal, creases where skinning weight is shared between bones
(over the joints), nails on the back of the last ~1 cm of each finger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

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


def vertex_normals(verts: Float[Tensor, "*b V 3"], faces: Tensor) -> Float[Tensor, "*b V 3"]:
    """Area-weighted unit vertex normals; outward for faces wound counter-clockwise seen from outside."""
    tri = verts[..., faces, :]  # (*b, F, 3, 3)
    face_n = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :], dim=-1)
    normals = torch.zeros_like(verts)
    index = faces.reshape(-1)
    normals.index_add_(-2, index, face_n.repeat_interleave(3, dim=-2))
    return F.normalize(normals, dim=-1)


def hand_albedo(template: HandTemplate, rig: HandRig, look: SkinLook) -> Float[Tensor, "V 3"]:
    """Per-vertex albedo of one hand in the template's topology."""
    verts = template.v_template.float()
    normals = vertex_normals(verts, template.faces)
    n = rig.frame[:, 2]
    palmar = torch.clamp((normals @ n) * 1.6, 0.0, 1.0)
    albedo = (
        torch.from_numpy(look.base).float() * (1 - palmar[:, None])
        + torch.from_numpy(look.palm).float() * palmar[:, None]
    )

    shared = 1.0 - template.weights.float().max(dim=1).values
    crease = (shared / shared.max().clamp(min=1e-6)) ** 2
    albedo = albedo * (1.0 - look.crease_depth * crease[:, None])

    blotch = look.blotch(verts)
    albedo = albedo * (1.0 + 0.05 * blotch[:, None]) + torch.tensor([0.015, -0.005, -0.01]) * blotch[:, None]

    tips = verts[template.tip_vertex_ids]  # (5, 3)
    to_tip = (verts[:, None] - tips[None]).norm(dim=-1).min(dim=1).values
    dorsal = torch.clamp(-(normals @ n) * 2.0 - 0.4, 0.0, 1.0)
    nail = torch.clamp((_NAIL_LENGTH - to_tip) / 0.003, 0.0, 1.0) * dorsal
    nail_colour = 0.45 * torch.from_numpy(look.base).float() + 0.55 * torch.from_numpy(_NAIL_TINT).float()
    albedo = albedo * (1 - nail[:, None]) + nail_colour * nail[:, None]
    return albedo.clamp(0.0, 1.0)
