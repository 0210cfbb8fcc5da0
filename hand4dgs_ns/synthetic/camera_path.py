"""The synthetic scene's world frame, the head-mounted camera's path and the static cameras.

World frame of the synthetic scenes: metres, z up, the floor at z = 0; the person starts at
the origin facing +y (x to their right). Cameras use OpenCV axes like everywhere else.

The person stands at a table and shifts around (slow body drift and yaw); the head camera
adds head-bob and sway at step frequency, smooth small rotations and occasional look-around
turns in which the head yaws and lifts, so the hands can leave the view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from hand4dgs_ns.synthetic.random_signals import bump, smooth_noise

UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class HeadPath:
    """The person's body frame and head camera over a clip (world frame, metres, radians)."""

    c2w: Float[np.ndarray, "F 4 4"]
    """Head camera, camera-to-world, OpenCV axes."""
    body_origin: Float[np.ndarray, "F 3"]
    """Point on the floor below the person's eyes (the body frame's origin)."""
    body_yaw: Float[np.ndarray, " F"]
    """Body heading: rotation about +z of the body frame (0 = facing +y)."""
    eye_height: float
    """Eye height above the floor when standing straight."""
    look_around: list[tuple[int, int]]
    """(first, last) frames of each look-around turn."""


def pinhole_intrinsics(width: int, height: int, hfov_deg: float) -> Float[np.ndarray, "3 3"]:
    """Square-pixel pinhole K with the given horizontal field of view and a centred principal point."""
    fx = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def body_rotation(yaw: Float[np.ndarray, " F"]) -> Float[np.ndarray, "F 3 3"]:
    """Rotation from the body frame (x right, y forward, z up) to the world frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    o, i = np.zeros_like(yaw), np.ones_like(yaw)
    # Positive yaw turns the person to their left (counter-clockwise seen from above).
    return np.stack([c, -s, o, s, c, o, o, o, i], axis=-1).reshape(*yaw.shape, 3, 3)


def look_c2w(
    eye: Float[np.ndarray, "F 3"], forward: Float[np.ndarray, "F 3"], roll: Float[np.ndarray, " F"] | None = None
) -> Float[np.ndarray, "F 4 4"]:
    """OpenCV camera-to-world looking along ``forward`` with the image's up near world +z, then rolled."""
    z = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    x = np.cross(z, UP)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    if roll is not None:
        c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
        x, y = c * x + s * y, -s * x + c * y
    c2w = np.zeros((eye.shape[0], 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def head_camera_path(rng: np.random.Generator, num_frames: int, fps: float) -> HeadPath:
    """A seeded head-camera path of a person working with their hands at a table."""
    t = np.arange(num_frames) / fps
    eye_height = float(rng.uniform(1.50, 1.72))

    # Body: a slow shuffle along a random heading plus slow heading changes.
    heading = rng.uniform(-np.pi, np.pi)
    speed = rng.uniform(0.0, 0.03)
    drift = speed * t[:, None] * np.array([np.cos(heading), np.sin(heading), 0.0])
    sway = smooth_noise(rng, num_frames, 0.015, 0.8 * fps, dims=3) * np.array([1.0, 1.0, 0.0])
    body_origin = drift + sway
    body_yaw = smooth_noise(rng, num_frames, np.deg2rad(4.0), 1.2 * fps)[:, 0]

    # Head relative to the body: leaning forward over the hands, bobbing at step frequency.
    step_hz = rng.uniform(1.6, 2.1)
    phase = rng.uniform(0, 2 * np.pi)
    bob = rng.uniform(0.004, 0.012) * np.sin(2 * np.pi * step_hz * t + phase)
    lateral = rng.uniform(0.003, 0.010) * np.sin(np.pi * step_hz * t + phase)
    head_local = np.stack([lateral, np.full_like(t, 0.06), eye_height + bob], axis=-1)
    head_local = head_local + smooth_noise(rng, num_frames, 0.006, 0.3 * fps, dims=3)

    yaw = smooth_noise(rng, num_frames, np.deg2rad(3.5), 0.35 * fps)[:, 0]
    pitch = (
        rng.uniform(np.deg2rad(45), np.deg2rad(58)) + smooth_noise(rng, num_frames, np.deg2rad(3.0), 0.4 * fps)[:, 0]
    )
    roll = smooth_noise(rng, num_frames, np.deg2rad(2.0), 0.5 * fps)[:, 0]
    pitch = pitch + np.deg2rad(1.0) * np.sin(2 * np.pi * step_hz * t + phase + 0.5)

    look_around = []
    duration = num_frames / fps
    count = rng.poisson(duration / 4.5) if duration >= 2.0 else 0
    if duration >= 4.0:
        count = max(count, 1)
    for _ in range(count):
        centre = rng.uniform(0.8, max(duration - 0.8, 0.81))
        half = rng.uniform(0.5, 0.9)
        window = bump(t, centre, half)
        yaw = yaw + rng.choice([-1.0, 1.0]) * np.deg2rad(rng.uniform(25, 50)) * window
        pitch = pitch - np.deg2rad(rng.uniform(10, 30)) * window
        frames = np.nonzero(window > 0.05)[0]
        if frames.size:
            look_around.append((int(frames[0]), int(frames[-1])))

    rot_body = body_rotation(body_yaw)
    eye = body_origin + np.einsum("fij,fj->fi", rot_body, head_local)
    total_yaw = body_yaw + yaw
    forward = np.stack([-np.sin(total_yaw) * np.cos(pitch), np.cos(total_yaw) * np.cos(pitch), -np.sin(pitch)], axis=-1)
    c2w = look_c2w(eye, forward, roll)
    return HeadPath(c2w=c2w, body_origin=body_origin, body_yaw=body_yaw, eye_height=eye_height, look_around=look_around)


def static_view_cameras(
    target: Float[np.ndarray, " 3"], body_yaw: float, rng: np.random.Generator
) -> dict[str, Float[np.ndarray, "4 4"]]:
    """Two third-person cameras in front-left and front-right of the person looking at ``target``.

    They stand across the table from the person, as H2O's static cameras do, a little above
    the hands and 0.6-0.75 m from them.
    """
    views = {}
    for name, side in (("left_static", 1.0), ("right_static", -1.0)):
        azimuth = body_yaw + side * np.deg2rad(rng.uniform(35, 60))
        distance = rng.uniform(0.6, 0.75)
        # Azimuth 0 is straight in front of the person (+y of the body), looking back at them.
        offset = np.array([-np.sin(azimuth), np.cos(azimuth), 0.0]) * distance
        eye = target + offset + np.array([0.0, 0.0, rng.uniform(0.2, 0.35)])
        views[name] = look_c2w(eye[None], (target - eye)[None])[0]
    return views
