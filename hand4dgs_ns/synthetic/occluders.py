"""Objects that occlude the hands: a box, a can or a ball, held in a hand or passing in front of one.

A held object sits in the palm's grasp and moves rigidly with the hand (a can lies across the
palm); a passing one sways across the line of sight from the head camera to a hand, between
the two, turning as it goes. They are drawn in a pass of their own over the finished frame
and written to the masks as occluders (label 3). They are not part of the hands' world: ground
truth, pseudo-labels and usable flags come from the frame without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from typing_extensions import assert_never

from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER
from hand4dgs_ns.synthetic.procedural import wave_noise
from hand4dgs_ns.synthetic.scene_render import SceneMesh

ObjectShape = Literal["box", "can", "ball"]
_SHAPES: tuple[ObjectShape, ...] = ("box", "can", "ball")
# Packaging and toy colours (sRGB), jittered per object.
_COLOURS = np.array(
    [[0.8, 0.12, 0.1], [0.1, 0.3, 0.75], [0.95, 0.8, 0.15], [0.15, 0.55, 0.25], [0.92, 0.92, 0.9], [0.1, 0.1, 0.12]]
)
_CAN_ENDS = np.array([0.72, 0.72, 0.74])  # bare metal lid and base
_CAN_SEGMENTS = 20
_PALM_JOINTS = [0, 5, 9, 13, 17]  # wrist and knuckles (OpenPose)


@dataclass(frozen=True)
class HandObject:
    """One object and how it moves."""

    shape: ObjectShape
    """Box, can (a cylinder) or ball."""
    half_size: Float[np.ndarray, " 3"]
    """Half extents along the object's axes, metres (can: radius, radius, half-height)."""
    colour: Float[np.ndarray, " 3"]
    """sRGB albedo."""
    hand: int
    """The hand it is held in or passes: 0 left, 1 right."""
    held: bool
    """Held in the hand's grasp, or passing in front of it."""
    sweep: float
    """Passing: amplitude of the sideways sway, metres at the hand's distance."""
    period: float
    """Passing: seconds per sway back and forth."""
    phase: float
    """Passing: phase of the sway, radians."""
    depth_fraction: float
    """Passing: where it is between the camera (0) and the hand (1)."""
    spin_axis: Float[np.ndarray, " 3"]
    """Passing: unit axis it turns about (world)."""
    spin_rate: float
    """Passing: radians per second."""


def sample_objects(rng: np.random.Generator, count: int) -> tuple[HandObject, ...]:
    """``count`` random objects, each with its hand, mode and motion."""
    objects = []
    for _ in range(count):
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        if shape == "box":
            half_size = rng.uniform(0.015, 0.045, 3)
        elif shape == "can":
            radius = rng.uniform(0.022, 0.034)
            half_size = np.array([radius, radius, rng.uniform(0.045, 0.07)])
        elif shape == "ball":
            half_size = np.full(3, rng.uniform(0.022, 0.04))
        else:
            assert_never(shape)
        axis = rng.standard_normal(3)
        objects.append(
            HandObject(
                shape=shape,
                half_size=half_size,
                colour=np.clip(_COLOURS[int(rng.integers(len(_COLOURS)))] * rng.uniform(0.85, 1.1), 0.0, 1.0),
                hand=int(rng.integers(2)),
                held=bool(rng.random() < 0.5),
                sweep=float(rng.uniform(0.08, 0.18)),
                period=float(rng.uniform(2.0, 4.0)),
                phase=float(rng.uniform(0.0, 2.0 * np.pi)),
                depth_fraction=float(rng.uniform(0.5, 0.75)),
                spin_axis=axis / np.linalg.norm(axis),
                spin_rate=float(rng.uniform(-2.0, 2.0)),
            )
        )
    return tuple(objects)


def _outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces of a convex mesh around the origin wound counter-clockwise seen from outside (as the
    renderer culls), whatever order they were listed in."""
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = (normal * tri.mean(axis=1)).sum(-1) < 0
    return np.where(inward[:, None], faces[:, [0, 2, 1]], faces)


def _box() -> tuple[np.ndarray, np.ndarray]:
    """A cube [-1, 1]^3 with four vertices per side, so each side is shaded flat."""
    verts, faces = [], []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for sign in (-1.0, 1.0):
            first = len(verts)
            for cu, cv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                corner = np.zeros(3)
                corner[axis], corner[u], corner[v] = sign, cu, cv
                verts.append(corner)
            faces += [[first, first + 1, first + 2], [first, first + 2, first + 3]]
    return np.array(verts), np.array(faces)


def _can(segments: int = _CAN_SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
    """A cylinder of radius 1 from z = -1 to 1: a smooth side and flat ends (rings doubled at the rims)."""
    angle = 2.0 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    side = [np.c_[ring, np.full(segments, z)] for z in (-1.0, 1.0)]
    verts = np.concatenate([*side, *side, [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]])
    faces = []
    for k in range(segments):
        a, b = k, (k + 1) % segments
        faces += [[a, b, b + segments], [a, b + segments, a + segments]]  # side
        faces += [[2 * segments + a, 2 * segments + b, 4 * segments]]  # bottom end
        faces += [[3 * segments + a, 3 * segments + b, 4 * segments + 1]]  # top end
    return verts, np.array(faces)


def _ball(rings: int = 8, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A unit UV sphere: poles and ``rings - 1`` latitude rings."""
    polar = np.pi * np.arange(1, rings) / rings
    azimuth = 2.0 * np.pi * np.arange(segments) / segments
    p, a = np.meshgrid(polar, azimuth, indexing="ij")
    body = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], axis=-1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 0.0, 1.0]], body, [[0.0, 0.0, -1.0]]])
    last = len(verts) - 1
    faces = []
    for k in range(segments):
        nxt = (k + 1) % segments
        faces += [[0, 1 + k, 1 + nxt], [last, 1 + (rings - 2) * segments + k, 1 + (rings - 2) * segments + nxt]]
        for r in range(rings - 2):
            a, b = 1 + r * segments + k, 1 + r * segments + nxt
            faces += [[a, b, b + segments], [a, b + segments, a + segments]]
    return verts, np.array(faces)


def unit_mesh(shape: ObjectShape) -> tuple[Float[np.ndarray, "M 3"], Int[np.ndarray, "T 3"]]:
    """Vertices (within [-1, 1]^3) and outward-wound faces of a shape."""
    if shape == "box":
        verts, faces = _box()
    elif shape == "can":
        verts, faces = _can()
    elif shape == "ball":
        verts, faces = _ball()
    else:
        assert_never(shape)
    return verts, _outward(verts, faces)


def _albedo(obj: HandObject, unit: np.ndarray) -> np.ndarray:
    colour = np.broadcast_to(obj.colour, unit.shape).copy()
    if obj.shape == "can":
        colour[2 * _CAN_SEGMENTS :] = _CAN_ENDS  # the ends' own rim rings and centres (see _can)
    return colour


def _rodrigues(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) by ``angle`` (F,) about the unit ``axis``."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _pose(
    obj: HandObject,
    palm: np.ndarray,
    hand_frame: np.ndarray,
    c2w: np.ndarray,
    times: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame rotation (F, 3, 3) and centre (F, 3) of ``obj`` in the world."""
    if obj.held:
        # In the grasp on the palm side; a can's axis runs across the palm, as when holding a drink.
        f, n = hand_frame[..., 1], hand_frame[..., 2]
        rotation = np.stack([f, n, np.cross(f, n)], axis=-1)
        return rotation, palm + n * (obj.half_size[1] + 0.015)[None] + f * 0.015
    eye, right = c2w[:, :3, 3], c2w[:, :3, 0]
    sway = obj.sweep * np.sin(2.0 * np.pi * times / obj.period + obj.phase)
    target = palm + right * sway[:, None]
    return _rodrigues(obj.spin_axis, obj.spin_rate * times), eye + obj.depth_fraction * (target - eye)


@dataclass(frozen=True)
class ObjectLayer:
    """The objects of a clip, ready to render over its frames."""

    mesh: SceneMesh
    """Topology, labels (all occluders) and surface of every object."""
    vertices: Float[Tensor, "F M 3"]
    """Per-frame vertices, world frame."""


def object_layer(
    objects: tuple[HandObject, ...],
    joints: Float[Tensor, "F 2 21 3"],
    hand_frames: Float[Tensor, "F 2 3 3"],
    c2w: Float[Tensor, "F 4 4"],
    fps: float,
    rng: np.random.Generator,
) -> ObjectLayer:
    """Meshes and per-frame vertices of ``objects`` around the hands (``hand_frames``: world columns
    thumb side, finger direction, palm normal); ``rng`` draws their fine surface texture."""
    palms = joints[:, :, _PALM_JOINTS].mean(dim=2).double().numpy()
    frames, c2w_np = hand_frames.double().numpy(), c2w.double().numpy()
    times = np.arange(c2w_np.shape[0]) / fps
    verts, faces, albedo, rest = [], [], [], []
    offset = 0
    for k, obj in enumerate(objects):
        unit, unit_faces = unit_mesh(obj.shape)
        local = unit * obj.half_size
        rotation, centre = _pose(obj, palms[:, obj.hand], frames[:, obj.hand], c2w_np, times)
        verts.append(np.einsum("fij,mj->fmi", rotation, local) + centre[:, None])
        faces.append(unit_faces + offset)
        albedo.append(_albedo(obj, unit))
        rest.append(local + np.array([float(k), 0.0, 0.0]))  # apart, so each object's texture differs
        offset += len(unit)
    all_faces = torch.from_numpy(np.concatenate(faces)).long()
    mesh = SceneMesh(
        faces=all_faces,
        face_labels=torch.full((all_faces.shape[0],), MASK_OCCLUDER),
        albedo=torch.from_numpy(np.concatenate(albedo)).float(),
        rest_points=torch.from_numpy(np.concatenate(rest)).float(),
        detail=wave_noise(rng, 100.0, 600.0),
        gloss=torch.ones(offset),
    )
    return ObjectLayer(mesh=mesh, vertices=torch.from_numpy(np.concatenate(verts, axis=1)).float())
