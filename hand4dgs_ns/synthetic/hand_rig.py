"""Anatomical articulation axes read off a hand template's rest pose, and poses built from them.

Nothing here assumes a template's orientation or bone count: the palm frame comes from the
OpenPose joints of the rest pose (wrist, index/middle/pinky knuckles) and the side, and the
joints that bend each finger come from ``openpose_map``. Local joint rotations in smplx's
``lbs`` are expressed in rest-pose axes, so a flexion about a bone's rest lateral axis bends
that bone in its parent's frame, whatever the parents did.

Palm frame (columns of :attr:`HandRig.frame`): ``s`` towards the thumb side, ``f`` from the
wrist to the middle knuckle, ``n`` out of the palm. Hold a right hand up, palm to the face:
fingers up (f), thumb to the viewer's right (s), palm towards the viewer (n), so
``n = s x f``; a left hand is the mirror image, ``n = f x s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands.template import HandTemplate

# OpenPose indices of each finger's three articulated joints and the next joint along the finger.
_CHAINS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
THUMB, INDEX, MIDDLE, RING, PINKY = range(5)


@dataclass(frozen=True)
class HandRig:
    """Articulation axes of one hand template (rest-pose coordinates of the template)."""

    side: str
    """"left" or "right"."""
    num_joints: int
    """Skeleton joints J of the template (hand poses hold J - 1 rotations)."""
    frame: Float[Tensor, "3 3"]
    """Palm frame, columns (s, f, n): thumb side, finger direction, palm normal."""
    finger_joints: Int[Tensor, "5 3"]
    """Skeleton joint indices bending each finger (thumb: CMC, MCP, IP; others: MCP, PIP, DIP)."""
    bone_dirs: Float[Tensor, "5 3 3"]
    """Rest direction of the bone each of those joints moves."""
    flex_axes: Float[Tensor, "5 3 3"]
    """Axes whose positive rotation bends the bone towards the palm."""
    spread_signs: Float[Tensor, " 5"]
    """Sign of a rotation about ``n`` that moves each finger away from the middle finger
    (thumb: towards the fingers, i.e. adduction)."""
    thumb_twist_sign: float
    """Sign of a rotation about the thumb's metacarpal that turns its pad towards the fingers."""
    rest_joints: Float[Tensor, "21 3"]
    """OpenPose joints of the rest pose (zero shape)."""
    wrist_loop: Int[Tensor, " L"]
    """Boundary vertices of the mesh's open wrist end, ordered by angle about f, counter-clockwise
    from ``f x n`` towards ``n`` (so a tube continuing the loop is wound outwards)."""
    wrist_loop_angles: Float[Tensor, " L"]
    """Angle of each loop vertex about f (0 along ``f x n``, pi/2 along ``n``)."""
    wrist_radii: Float[Tensor, " 2"]
    """Half-width (along s) and half-thickness (along n) of that loop."""


def _openpose_rest_joints(template: HandTemplate) -> Tensor:
    joints = template.J_regressor @ template.v_template
    tips = template.v_template[template.tip_vertex_ids]
    return torch.cat([joints, tips], dim=0)[template.openpose_map]


def build_rig(template: HandTemplate) -> HandRig:
    """Derives the palm frame and per-joint flexion axes of ``template``'s rest pose."""
    template = template.to(device=torch.device("cpu"), dtype=torch.float32)
    rest = _openpose_rest_joints(template)
    f = F.normalize(rest[9] - rest[0], dim=0)
    across = rest[5] - rest[17]
    s = F.normalize(across - (across @ f) * f, dim=0)
    n = torch.linalg.cross(s, f) if template.side == "right" else torch.linalg.cross(f, s)

    skeleton_of_openpose = template.openpose_map
    finger_joints = torch.empty(5, 3, dtype=torch.long)
    bone_dirs = torch.empty(5, 3, 3)
    for finger, chain in enumerate(_CHAINS):
        for k in range(3):
            joint = int(skeleton_of_openpose[chain[k]])
            if joint >= template.num_joints or joint == 0:
                raise ValueError(f"OpenPose joint {chain[k]} of the {template.name} template is not a bending joint")
            finger_joints[finger, k] = joint
            bone_dirs[finger, k] = F.normalize(rest[chain[k + 1]] - rest[chain[k]], dim=0)
    flex_axes = F.normalize(torch.linalg.cross(bone_dirs, n.expand_as(bone_dirs), dim=-1), dim=-1)

    # A small rotation by +a about n moves a bone direction d by a (n x d).
    sideways = torch.linalg.cross(n.expand(5, 3), bone_dirs[:, 0], dim=-1) @ s
    # Index moves towards the thumb side, ring and pinky away from it, the thumb towards the fingers.
    spread_signs = torch.sign(sideways) * torch.tensor([-1.0, 1.0, 0.0, -1.0, -1.0])
    thumb_d = bone_dirs[THUMB, 0]
    thumb_twist_sign = float(torch.sign(torch.linalg.cross(thumb_d, n, dim=0) @ (-s)))

    loop, loop_angles = _wrist_loop(template, rest[0], f, n)
    loop_points = template.v_template[loop] - rest[0]
    radii = 0.5 * torch.stack(
        [(loop_points @ s).amax() - (loop_points @ s).amin(), (loop_points @ n).amax() - (loop_points @ n).amin()]
    )
    return HandRig(
        side=template.side,
        num_joints=template.num_joints,
        frame=torch.stack([s, f, n], dim=1),
        finger_joints=finger_joints,
        bone_dirs=bone_dirs,
        flex_axes=flex_axes,
        spread_signs=spread_signs,
        thumb_twist_sign=thumb_twist_sign,
        rest_joints=rest,
        wrist_loop=loop,
        wrist_loop_angles=loop_angles,
        wrist_radii=radii,
    )


def _wrist_loop(template: HandTemplate, wrist: Tensor, f: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """Vertices on open edges (used by one face) within 3 cm of the wrist, sorted by angle about f,
    and their angles."""
    faces = template.faces
    edges = torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), dim=1).values
    unique, counts = torch.unique(edges, dim=0, return_counts=True)
    open_vertices = torch.unique(unique[counts == 1])
    offsets = template.v_template[open_vertices] - wrist
    open_vertices = open_vertices[(offsets @ f) < 0.03]
    if open_vertices.numel() < 3:
        raise ValueError(f"the {template.name} {template.side} hand mesh has no open wrist end to attach an arm to")
    offsets = template.v_template[open_vertices] - wrist
    angle = torch.atan2(offsets @ n, offsets @ torch.linalg.cross(f, n, dim=0))
    order = torch.argsort(angle)
    return open_vertices[order], angle[order]


def articulate(
    rig: HandRig,
    flex: Float[Tensor, "T 5 3"],
    spread: Float[Tensor, "T 5"],
    thumb_opposition: Float[Tensor, " T"],
) -> Float[Tensor, "T Jm1 3 3"]:
    """Local joint rotations (``hand_pose`` for :func:`hand_forward`) from anatomical angles.

    Args:
        rig: the template's axes.
        flex: flexion in radians per finger joint (thumb: CMC, MCP, IP); positive bends palmwards.
        spread: abduction in radians per finger at its first joint; positive moves the finger
            away from the middle finger (thumb: towards the fingers).
        thumb_opposition: 0..1, turns the thumb's pad to face the fingers and brings it in front
            of the palm (a twist about its metacarpal plus extra CMC flexion and adduction).
    """
    T = flex.shape[0]
    dtype = flex.dtype
    n = rig.frame[:, 2].to(dtype)
    pose = torch.eye(3, dtype=dtype).expand(T, rig.num_joints - 1, 3, 3).clone()

    rot_flex = axis_angle_to_matrix(flex[..., None] * rig.flex_axes.to(dtype))  # (T, 5, 3, 3)
    rot_spread = axis_angle_to_matrix((spread * rig.spread_signs.to(dtype))[..., None] * n)  # (T, 5, 3, 3)
    first = rot_spread @ rot_flex[:, :, 0]

    opp = thumb_opposition[:, None]
    twist = axis_angle_to_matrix(rig.thumb_twist_sign * opp * 0.9 * rig.bone_dirs[THUMB, 0].to(dtype))
    opp_flex = axis_angle_to_matrix(opp * 0.45 * rig.flex_axes[THUMB, 0].to(dtype))
    opp_adduct = axis_angle_to_matrix(rig.spread_signs[THUMB].to(dtype) * opp * 0.35 * n)
    thumb_first = opp_adduct @ opp_flex @ first[:, THUMB] @ twist

    first = torch.cat([thumb_first[:, None], first[:, 1:]], dim=1)
    slots = rig.finger_joints - 1  # hand_pose excludes the root joint
    pose[:, slots[:, 0]] = first
    pose[:, slots[:, 1]] = rot_flex[:, :, 1]
    pose[:, slots[:, 2]] = rot_flex[:, :, 2]
    return pose


def orient_hand(
    rig: HandRig, finger_dir: Float[Tensor, "T 3"], palm_normal: Float[Tensor, "T 3"]
) -> Float[Tensor, "T 3 3"]:
    """Global rotation taking the rest palm frame to a world finger direction and palm normal.

    ``palm_normal`` is made orthogonal to ``finger_dir``; the thumb side follows from the
    hand's side so the result is always a proper rotation.
    """
    f = F.normalize(finger_dir, dim=-1)
    n = F.normalize(palm_normal - (palm_normal * f).sum(-1, keepdim=True) * f, dim=-1)
    s = torch.linalg.cross(f, n, dim=-1) if rig.side == "right" else torch.linalg.cross(n, f, dim=-1)
    world = torch.stack([s, f, n], dim=-1)
    return world @ rig.frame.to(world.dtype).T
