"""Two-hand motion scripts: keyframed reaches, grasp/open cycles, wrist turns, crossings, exits.

A clip is a sequence of keyframes, a few tenths of a second to a second apart (short gaps
are fast moves). At each keyframe each hand gets a target in the person's body frame (wrist
position, wrist angles, a gesture); targets are joined by shape-preserving cubic
interpolation (PCHIP, no overshoot) and a little tremor is added. Every clip with 5 or more
keyframes inside it holds one crossing (one hand reaches across the midline above the other,
so it occludes it) and one exit (a hand drops or swings out of the view). Positions are body-relative, so head turns
(see :mod:`.camera_path`) move the hands in the image independently of the hands' motion.

Body frame: x to the person's right, y forward, z up, origin on the floor below the eyes.
Per-hand lateral coordinates are mirrored: positive = away from the body's midline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from scipy.interpolate import PchipInterpolator
from torch import Tensor

from hand4dgs_ns.data.sequence_format import HAND_SIDES
from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.synthetic.camera_path import HeadPath, body_rotation
from hand4dgs_ns.synthetic.hand_rig import HandRig, articulate, orient_hand
from hand4dgs_ns.synthetic.random_signals import smooth_noise

_SIDE_SIGN = {"left": -1.0, "right": 1.0}

# Gesture -> (flexion level per finger thumb..pinky in 0..1, spread 0..1, thumb opposition 0..1).
_GESTURES: dict[str, tuple[tuple[float, ...], float, float]] = {
    "open": ((0.05, 0.02, 0.02, 0.04, 0.06), 0.9, 0.1),
    "relaxed": ((0.25, 0.22, 0.28, 0.34, 0.38), 0.35, 0.3),
    "point": ((0.55, 0.02, 0.85, 0.9, 0.9), 0.1, 0.7),
    "fist": ((0.75, 0.92, 0.95, 0.95, 0.95), 0.0, 0.55),
    "grasp": ((0.45, 0.55, 0.6, 0.62, 0.65), 0.15, 0.85),
    "pinch": ((0.5, 0.5, 0.35, 0.45, 0.5), 0.2, 1.0),
}
_OPEN_GESTURES = ("open", "relaxed", "point")
_CLOSED_GESTURES = ("fist", "grasp", "pinch")
# Radians of flexion per unit flexion level at each finger joint (thumb: CMC, MCP, IP).
_FLEX_SCALE = np.array([[0.35, 0.85, 1.2]] + [[1.45, 1.7, 1.1]] * 4)
_SPREAD_SCALE = np.array([0.25, 0.2, 0.0, 0.15, 0.28])


@dataclass(frozen=True)
class HandTrack:
    """One hand's per-frame pose in the world frame (before shape and translation are applied)."""

    global_orient: Float[Tensor, "F 3 3"]
    """Rotation of the template's rest pose into the world."""
    hand_pose: Float[Tensor, "F Jm1 3 3"]
    """Local joint rotations (absolute, not relative to any mean pose)."""
    wrist: Float[np.ndarray, "F 3"]
    """Wrist joint position, world frame."""
    forearm_dir: Float[np.ndarray, "F 3"]
    """Unit vector from the elbow to the wrist, world frame."""
    shoulder: Float[np.ndarray, "F 3"]
    """Shoulder joint position, world frame (it moves with the body)."""


@dataclass(frozen=True)
class ClipMotion:
    """Both hands' motion and where the scripted events happen (frame ranges, inclusive)."""

    left: HandTrack
    right: HandTrack
    crossings: list[tuple[int, int]]
    """Frames where one hand reaches across above the other (and occludes it)."""
    exits: list[tuple[str, int, int]]
    """(side, first, last) frames where a hand is sent out of the view."""


@dataclass(frozen=True)
class _Key:
    position: np.ndarray  # (3,) lateral (mirrored), forward, height relative to the eyes
    wrist: np.ndarray  # (3,) flexion, deviation, roll (pronation: 0 palm down, pi/2 thumb up)
    flex: np.ndarray  # (5,) flexion levels
    spread: float
    opposition: float


def _home(rng: np.random.Generator) -> np.ndarray:
    return np.array([0.13, 0.33, -0.37]) + rng.uniform([-0.06, -0.06, -0.05], [0.07, 0.06, 0.05])


def _gesture(rng: np.random.Generator, name: str) -> tuple[np.ndarray, float, float]:
    flex, spread, opposition = _GESTURES[name]
    flex = np.clip(np.asarray(flex) + rng.normal(0, 0.07, 5), 0.0, 1.0)
    return (
        flex,
        float(np.clip(spread + rng.normal(0, 0.1), 0, 1)),
        float(np.clip(opposition + rng.normal(0, 0.1), 0, 1)),
    )


def _keyframe_times(rng: np.random.Generator, duration: float) -> tuple[np.ndarray, np.ndarray]:
    times, fast = [0.0], [False]
    while times[-1] < duration:
        is_fast = len(times) > 1 and rng.random() < 0.2
        times.append(times[-1] + (rng.uniform(0.18, 0.3) if is_fast else rng.uniform(0.45, 1.1)))
        fast.append(is_fast)
    return np.asarray(times), np.asarray(fast)


def _script(
    rng: np.random.Generator, times: np.ndarray, fast: np.ndarray, duration: float
) -> tuple[dict[str, list[_Key]], int | None, tuple[str, int] | None]:
    """Keyframe targets for both hands plus the crossing keyframe and the exit (side, keyframe)."""
    count = len(times)
    inside = int(np.searchsorted(times, duration, side="right"))  # keyframes within the clip
    cross = exit_ = None
    if inside >= 5:
        cross = int(rng.integers(1, inside - 2))
        choices = [k for k in range(1, inside) if k < cross - 1 or k > cross + 2]
        if choices:
            exit_ = (str(rng.choice(HAND_SIDES)), int(rng.choice(choices)))
    upper = str(rng.choice(HAND_SIDES))
    keys: dict[str, list[_Key]] = {side: [] for side in HAND_SIDES}
    for side in HAND_SIDES:
        closed = bool(rng.random() < 0.5)
        for k in range(count):
            position = _home(rng)
            wrist = np.array([rng.uniform(-0.5, 0.35), rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.9)])
            if cross is not None and k in (cross, cross + 1):
                # The upper hand reaches across the midline above the other, which stays near
                # it: the hands overlap in the view and the upper one occludes the lower.
                if side == upper:
                    position = np.array(
                        [-rng.uniform(0.02, 0.07), rng.uniform(0.28, 0.36), -0.31 + rng.uniform(-0.02, 0.02)]
                    )
                else:
                    position = np.array(
                        [rng.uniform(0.02, 0.06), rng.uniform(0.3, 0.38), -0.4 + rng.uniform(-0.02, 0.02)]
                    )
            elif exit_ is not None and exit_ == (side, k):
                if rng.random() < 0.5:
                    position = np.array([rng.uniform(0.42, 0.55), rng.uniform(0.1, 0.3), -rng.uniform(0.3, 0.45)])
                else:
                    position = np.array([rng.uniform(0.15, 0.3), rng.uniform(0.0, 0.12), -rng.uniform(0.72, 0.8)])
            elif fast[k]:
                position = position + rng.uniform([-0.05, 0.05, -0.05], [0.15, 0.18, 0.08])
            elif rng.random() < 0.2:
                wrist[2] = rng.uniform(1.2, 2.6)  # turn the palm up to look at it
            if rng.random() < 0.75:
                closed = not closed
            flex, spread, opposition = _gesture(rng, str(rng.choice(_CLOSED_GESTURES if closed else _OPEN_GESTURES)))
            keys[side].append(_Key(position, wrist, flex, spread, opposition))
    return keys, cross, exit_


def _rotate(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotates vectors v about unit axes by angles (all batched over frames)."""
    rot = axis_angle_to_matrix(torch.from_numpy(axis * angle[:, None]))
    return (rot @ torch.from_numpy(np.ascontiguousarray(v))[..., None]).squeeze(-1).numpy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _track(
    rig: HandRig, keys: list[_Key], times: np.ndarray, t: np.ndarray, head: HeadPath, rng: np.random.Generator
) -> HandTrack:
    sign = _SIDE_SIGN[rig.side]
    num = t.shape[0]

    def interp(values: list[np.ndarray]) -> np.ndarray:
        return PchipInterpolator(times, np.stack(values), axis=0)(t)

    position = interp([k.position for k in keys]) + smooth_noise(rng, num, 0.003, 2.0, dims=3)
    wrist_angles = interp([k.wrist for k in keys]) + smooth_noise(rng, num, np.deg2rad(2.0), 3.0, dims=3)
    flex_level = np.clip(interp([k.flex for k in keys]) + smooth_noise(rng, num, 0.03, 3.0, dims=5), 0.0, 1.0)
    spread_level = np.clip(interp([np.array([k.spread]) for k in keys])[:, 0], 0.0, 1.0)
    opposition = np.clip(interp([np.array([k.opposition]) for k in keys])[:, 0], 0.0, 1.0)

    rot_body = body_rotation(head.body_yaw)
    mirror = np.array([sign, 1.0, 1.0])
    lift = np.array([0.0, 0.0, head.eye_height])
    wrist_body = position * mirror + lift
    elbow_body = (np.array([0.21, 0.0, -0.64]) + rng.uniform(-0.03, 0.03, 3)) * mirror + lift
    shoulder_body = (np.array([0.19, -0.05, -0.24]) + rng.uniform(-0.02, 0.02, 3)) * mirror + lift
    to_world = lambda v: np.einsum("fij,fj->fi", rot_body, v)  # noqa: E731
    wrist_world = head.body_origin + to_world(wrist_body)
    forearm = _unit(to_world(wrist_body - elbow_body))

    down = np.array([0.0, 0.0, -1.0])
    normal = _unit(down - (forearm @ down)[:, None] * forearm)
    normal = _rotate(normal, forearm, sign * wrist_angles[:, 2])
    lateral = _unit(np.cross(forearm, normal))
    finger_dir = _rotate(forearm, lateral, wrist_angles[:, 0])
    normal = _rotate(normal, lateral, wrist_angles[:, 0])
    finger_dir = _rotate(finger_dir, normal, wrist_angles[:, 1])

    flex = torch.from_numpy(flex_level[:, :, None] * _FLEX_SCALE).float()
    # Fingers spread less as they flex (a fist cannot splay its fingers).
    spread = torch.from_numpy(spread_level[:, None] * _SPREAD_SCALE * (1.0 - 0.7 * flex_level)).float()
    hand_pose = articulate(rig, flex, spread, torch.from_numpy(opposition).float())
    global_orient = orient_hand(rig, torch.from_numpy(finger_dir).float(), torch.from_numpy(normal).float())
    return HandTrack(
        global_orient=global_orient,
        hand_pose=hand_pose,
        wrist=wrist_world,
        forearm_dir=forearm,
        shoulder=head.body_origin + to_world(np.broadcast_to(shoulder_body, wrist_body.shape)),
    )


def _frames_near(times: np.ndarray, k: int, t: np.ndarray) -> tuple[int, int]:
    lo = times[max(k - 1, 0)] * 0.5 + times[k] * 0.5
    hi = times[min(k + 1, len(times) - 1)] * 0.5 + times[k] * 0.5
    frames = np.nonzero((t >= lo) & (t <= hi))[0]
    return (int(frames[0]), int(frames[-1])) if frames.size else (0, -1)


def hand_motion(
    rigs: dict[str, HandRig], head: HeadPath, rng: np.random.Generator, num_frames: int, fps: float
) -> ClipMotion:
    """Scripts and evaluates both hands' motion over ``num_frames`` frames."""
    t = np.arange(num_frames) / fps
    times, fast = _keyframe_times(rng, max(t[-1], 1.0 / fps))
    keys, cross, exit_ = _script(rng, times, fast, float(t[-1]))
    tracks = {side: _track(rigs[side], keys[side], times, t, head, rng) for side in HAND_SIDES}
    crossings = []
    if cross is not None:
        first, _ = _frames_near(times, cross, t)
        _, last = _frames_near(times, cross + 1, t)
        crossings.append((first, last))
    exits = []
    if exit_ is not None:
        exits.append((exit_[0], *_frames_near(times, exit_[1], t)))
    return ClipMotion(left=tracks["left"], right=tracks["right"], crossings=crossings, exits=exits)
