"""Arms: tapered elliptic tubes continuing each hand mesh's open wrist end to the shoulder.

They are occluders (mask value 3), there so the hands do not float: in a head-camera view the
arms enter from the image border as they do in real egocentric video. The tube's first
ring is the hand mesh's own wrist boundary (posed), so the seam is closed. Then come
ellipses about the forearm's axis, which turn with the hand (pronation) and widen towards
the elbow, a ring at the elbow on the bisector of the bend, and rings along the upper arm
to the shoulder, where a fan closes the tube.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

_FOREARM_RINGS = np.linspace(0.02, 1.0, 5)  # fractions of the forearm, the last one at the elbow
_UPPER_RINGS = np.array([0.5, 1.0])  # fractions of the upper arm
_SLEEVE_RINGS = 2
RINGS = 1 + len(_FOREARM_RINGS) + len(_UPPER_RINGS) + _SLEEVE_RINGS
"""Rings of the tube, the wrist loop included."""
_UPPER_ARM = 0.3  # nominal upper-arm length for placing the sleeve's edge


@dataclass(frozen=True)
class ArmLook:
    """Arm proportions and clothing of one subject."""

    forearm_length: float
    """Wrist to elbow, metres."""
    sleeve_start: float
    """Distance along the arm from the wrist where the sleeve begins (upper arm: short sleeves)."""
    sleeve_colour: Float[np.ndarray, " 3"]
    """sRGB albedo of the sleeve."""
    sleeveless: bool = False
    """No sleeve at all: skin to the shoulder (the tube's rings stay where the sleeve's edge would be)."""


def sample_arm_look(rng: np.random.Generator) -> ArmLook:
    """Random forearm length, sleeve length (long pushed up, or short) and sleeve colour."""
    forearm = float(rng.uniform(0.25, 0.29))
    short = rng.random() < 0.35
    return ArmLook(
        forearm_length=forearm,
        sleeve_start=forearm + float(rng.uniform(0.05, 0.15)) if short else float(rng.uniform(0.04, 0.16)),
        sleeve_colour=np.clip(rng.uniform(0.05, 0.9, 3) * rng.uniform(0.5, 1.0), 0, 1),
    )


def bare_arms(look: ArmLook) -> ArmLook:
    """The same arms with no sleeve at all (a sleeveless top): skin from the wrist to the shoulder.
    Only the colour changes, so the arms' outline, and with it every mask, stays the same."""
    return replace(look, sleeveless=True)


def _ring_params(look: ArmLook) -> tuple[np.ndarray, np.ndarray]:
    """Per ellipse ring: (on_upper_arm, parameter), sorted along the arm. The parameter is a
    distance from the wrist on the forearm and a fraction of the upper arm beyond the elbow;
    two extra rings hug the sleeve's edge so it stays sharp."""
    first = _FOREARM_RINGS[0] * look.forearm_length
    edge = np.array([look.sleeve_start - 0.002, look.sleeve_start + 0.002])
    nominal = np.sort(
        np.concatenate(
            [
                _FOREARM_RINGS * look.forearm_length,
                look.forearm_length + _UPPER_RINGS * _UPPER_ARM,
                np.clip(edge, first, None),
            ]
        )
    )
    nominal = np.minimum(nominal, look.forearm_length + _UPPER_ARM)
    upper = nominal > look.forearm_length + 1e-9
    param = np.where(upper, (nominal - look.forearm_length) / _UPPER_ARM, nominal)
    return upper, param


def _nominal_distance(look: ArmLook) -> np.ndarray:
    upper, param = _ring_params(look)
    return np.where(upper, look.forearm_length + param * _UPPER_ARM, param)


def arm_faces(segments: int) -> Int[Tensor, "F 3"]:
    """Triangles ring to ring plus a fan closing the shoulder end, wound counter-clockwise seen
    from outside (like the hand templates) when rings run counter-clockwise about the arm."""
    faces = []
    for r in range(RINGS - 1):
        for k in range(segments):
            a, b = r * segments + k, r * segments + (k + 1) % segments
            faces += [[a, b, a + segments], [b, b + segments, a + segments]]
    last, centre = (RINGS - 1) * segments, RINGS * segments
    faces += [[last + k, last + (k + 1) % segments, centre] for k in range(segments)]
    return torch.tensor(faces, dtype=torch.long)


def _frame(along: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-section axes (e_s, e_n) for a ring whose axis points ``along`` (towards the hand)."""
    e_n = reference - (reference * along).sum(-1, keepdim=True) * along
    e_n = e_n / e_n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.linalg.cross(along, e_n, dim=-1), e_n


def arm_vertices(
    wrist_loop: Float[Tensor, "T L 3"],
    loop_angles: Float[Tensor, " L"],
    wrist: Float[Tensor, "T 3"],
    direction: Float[Tensor, "T 3"],
    palm_normal: Float[Tensor, "T 3"],
    shoulder: Float[Tensor, "T 3"],
    wrist_radii: Float[Tensor, " 2"],
    look: ArmLook,
) -> Float[Tensor, "T N 3"]:
    """Tube vertices per frame: the posed wrist loop, ``RINGS - 1`` ellipses, the shoulder centre.

    Ellipse points sit at the loop vertices' angles about the arm so the rings stay in step.
    ``direction`` points from the elbow to the wrist.
    """
    upper_np, param_np = _ring_params(look)
    upper = torch.from_numpy(upper_np)[None, :, None]
    param = torch.from_numpy(param_np).float()[None, :, None]
    fore = direction / direction.norm(dim=-1, keepdim=True)
    elbow = wrist - look.forearm_length * fore
    upper_dir = elbow - shoulder
    upper_dir = upper_dir / upper_dir.norm(dim=-1, keepdim=True)
    fore_s, fore_n = _frame(fore, palm_normal)
    bisector = (fore + upper_dir) / (fore + upper_dir).norm(dim=-1, keepdim=True).clamp(min=1e-9)
    elbow_s, elbow_n = _frame(bisector, fore_n)
    up_s, up_n = _frame(upper_dir, elbow_n)

    on_forearm = wrist[:, None] - param * fore[:, None]
    on_upper = elbow[:, None] + param * (shoulder - elbow)[:, None]
    centre = torch.where(upper, on_upper, on_forearm)  # (T, R, 3)
    at_elbow = (~upper) & (param >= look.forearm_length - 1e-6)
    pick = lambda f, e, u: torch.where(upper, u[:, None], torch.where(at_elbow, e[:, None], f[:, None]))  # noqa: E731
    e_s, e_n = pick(fore_s, elbow_s, up_s), pick(fore_n, elbow_n, up_n)

    # Forearms widen from the wrist to the elbow; upper arms keep the elbow's girth, rounder.
    grow = torch.from_numpy(np.minimum(_nominal_distance(look) / look.forearm_length, 1.0)).float()
    radius_s = wrist_radii[0] * (1.0 + 0.5 * grow)
    radius_n = wrist_radii[1] * (1.0 + 0.9 * grow)
    cos, sin = torch.cos(loop_angles), torch.sin(loop_angles)
    rings = (
        centre[:, :, None, :]
        + (radius_s[:, None] * cos)[None, :, :, None] * e_s[:, :, None, :]
        + (radius_n[:, None] * sin)[None, :, :, None] * e_n[:, :, None, :]
    )
    T = wrist.shape[0]
    return torch.cat([wrist_loop, rings.reshape(T, -1, 3), shoulder[:, None]], dim=1)


def sleeve_cover(look: ArmLook, segments: int) -> Float[np.ndarray, " N"]:
    """Per tube vertex after the wrist loop (``segments`` per ring, then the shoulder centre):
    0 on skin, 1 on the sleeve, a 4 mm blend at its edge."""
    distance = np.concatenate([np.repeat(_nominal_distance(look), segments), [look.forearm_length + _UPPER_ARM]])
    if look.sleeveless:
        return np.zeros_like(distance)
    return np.clip((distance - look.sleeve_start) / 0.004 + 0.5, 0.0, 1.0)


def arm_albedo(look: ArmLook, skin: Float[np.ndarray, " 3"], loop_albedo: Float[Tensor, "L 3"]) -> Float[Tensor, "N 3"]:
    """Per-vertex albedo: the hand's own colours on the wrist loop, skin, then the sleeve."""
    sleeve = sleeve_cover(look, loop_albedo.shape[0])[:, None]
    arm = torch.from_numpy(skin * (1 - sleeve) + look.sleeve_colour * sleeve).float()
    return torch.cat([loop_albedo.float(), arm])


def arm_gloss(look: ArmLook, segments: int) -> Float[Tensor, " N"]:
    """Per-vertex weight of skin highlights on the tube: 1 on skin (wrist loop included), 0 on cloth."""
    return torch.cat([torch.ones(segments), torch.from_numpy(1.0 - sleeve_cover(look, segments)).float()])


def arm_rest_points(
    look: ArmLook, loop_rest: Float[Tensor, "L 3"], loop_angles: Float[Tensor, " L"]
) -> Float[Tensor, "N 3"]:
    """Fixed surface coordinates (for texture detail) that move with the tube."""
    distance = torch.from_numpy(_nominal_distance(look)).float()
    angle = loop_angles.expand(distance.numel(), -1)
    ring = torch.stack([0.03 * torch.cos(angle), 0.03 * torch.sin(angle), distance[:, None].expand_as(angle)], dim=-1)
    end = torch.tensor([[0.0, 0.0, look.forearm_length + _UPPER_ARM]])
    return torch.cat([loop_rest.float(), ring.reshape(-1, 3), end])
