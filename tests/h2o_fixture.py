"""A tiny H2O dataset on disk for tests, in the exact layout of the official archives.

:func:`write_h2o_fixture` writes, for every subject, action and sequence asked for::

    <root>/<subject>/<action>/<n>/cam{0..4}/
        rgb/NNNNNN.png            random frames, width x height
        depth/NNNNNN.png          random uint16 depth in millimetres
        cam_intrinsics.txt        fx fy cx cy width height
        cam_pose/NNNNNN.txt       16 numbers: row-major camera-to-world, OpenCV axes, metres
        hand_pose/NNNNNN.txt      128 numbers: left flag, left 21x3 joints, right flag, right
                                  21x3 joints, in that camera's frame (OpenPose order)
        hand_pose_mano/NNNNNN.txt 124 numbers: per hand (left first) flag, transl (3),
                                  global orient (3), finger pose (45), betas (10), in that
                                  camera's frame (MANO, flat_hand_mean=True, no PCA)

Every text file is one line of space-separated numbers and folder names are lower-case, as in
the archives; ``obj_pose``, ``obj_pose_rt``, ``action_label`` and ``verb_label`` are left out
(the project does not read them). cam4 is the moving egocentric camera; cam0-cam3 are static
cameras looking at the hands. Hands are random MANO poses of the templates in ``mano_dir``
(write them with ``fake_mano.write_fake_mano_dir``), placed in front of cam4 with the left hand
in the left half of the frame and the right hand in the right half, both wholly inside it and
at least 12 pixels wide and tall. The right hand is not annotated in frame 1 (flag 0, zeros).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from hand4dgs_ns.hands import HandTemplate, hand_forward_axis_angle, load_mano

EGO = "cam4"
STATIC = ("cam0", "cam1", "cam2", "cam3")
MISSING_RIGHT_FRAME = 1
MIN_HAND_PIXELS = 12.0


def _line(values: np.ndarray) -> str:
    return " ".join(f"{float(v):.17g}" for v in np.ravel(values)) + "\n"


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world at ``position`` looking at ``target``, world +y roughly down in the image."""
    z = (target - position) / np.linalg.norm(target - position)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = position
    return c2w


def _joints(template: HandTemplate, orient: np.ndarray, pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """The 21 joints (21, 3) of a MANO hand at zero translation."""
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)[None]  # noqa: E731
    return hand_forward_axis_angle(template, t(orient), t(pose), t(betas), t(np.zeros(3))).joints[0].numpy()


def _rest_wrist(template: HandTemplate, betas: np.ndarray) -> np.ndarray:
    """The wrist joint (3,) of the unposed hand of shape ``betas``: what MANO's global orient turns about."""
    v_shaped = template.v_template + template.shapedirs @ torch.as_tensor(betas, dtype=torch.float64)
    return (template.J_regressor[0] @ v_shaped).numpy()


def _project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def _place_hand(
    rng: np.random.Generator, template: HandTemplate, K: np.ndarray, region: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Random MANO parameters (62 numbers with flag 1) of a hand filling most of ``region`` (x0 y0 x1 y1 pixels).

    Returns the parameters and the hand's joints in the camera frame.
    """
    size = region[2:] - region[:2]
    for _ in range(200):
        orient = Rotation.random(random_state=rng).as_rotvec()
        pose = 0.3 * rng.normal(size=45)
        betas = rng.normal(size=10)
        joints = _joints(template, orient, pose, betas)
        target = (region[:2] + region[2:]) / 2
        depth, transl = 0.4, np.zeros(3)
        # Move the hand along the ray through the region's centre and scale its depth until
        # the projected joints fill 80% of the region (perspective makes this iterative).
        for _ in range(8):
            ray = np.linalg.solve(K, np.array([target[0], target[1], 1.0]))
            transl = ray * depth - joints.mean(axis=0)
            uv = _project(K, joints + transl)
            extent = uv.max(axis=0) - uv.min(axis=0)
            depth *= float(np.max(extent / size)) / 0.8
            target = target + (region[:2] + region[2:]) / 2 - (uv.max(axis=0) + uv.min(axis=0)) / 2
        uv = _project(K, joints + transl)
        extent = uv.max(axis=0) - uv.min(axis=0)
        inside = (uv >= region[:2]).all() and (uv <= region[2:]).all()
        if inside and extent.min() >= MIN_HAND_PIXELS and ((joints + transl)[:, 2] > 0.05).all():
            params = np.concatenate([[1.0], transl, orient, pose, betas])
            return params, joints + transl
    raise ValueError(f"no hand pose fits the region {region}: make the fixture's images larger")


def _mano_in_other_camera(params: np.ndarray, template: HandTemplate, cam_from_ego: np.ndarray) -> np.ndarray:
    """The same hand's 62 parameters in another camera's frame.

    MANO turns the hand about its rest wrist joint J0, then adds transl:
    ``p = R_g (v - J0) + J0 + t``; in a camera ``q = R p + T`` this is MANO with orient
    ``R R_g`` and transl ``R (J0 + t) + T - J0``.
    """
    if params[0] < 0.5:
        return params
    wrist = _rest_wrist(template, params[52:62])
    rotation, translation = cam_from_ego[:3, :3], cam_from_ego[:3, 3]
    orient = Rotation.from_matrix(rotation @ Rotation.from_rotvec(params[4:7]).as_matrix()).as_rotvec()
    transl = rotation @ (wrist + params[1:4]) + translation - wrist
    return np.concatenate([params[:1], transl, orient, params[7:]])


def _hand_pose_line(joints: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The 128 numbers of a ``hand_pose`` file: flag and 21x3 joints per hand, left first."""
    parts = []
    for slot in range(2):
        parts += [[float(valid[slot])], joints[slot].ravel() if valid[slot] else np.zeros(63)]
    return np.concatenate(parts)


def _write_camera(
    folder: Path,
    rng: np.random.Generator,
    K: np.ndarray,
    width: int,
    height: int,
    c2w: np.ndarray,
    joints_world: np.ndarray,
    valid: np.ndarray,
    mano: np.ndarray,
) -> None:
    """Writes one camera folder: frames, depth, intrinsics and per-frame poses and hands."""
    for sub in ("rgb", "depth", "cam_pose", "hand_pose", "hand_pose_mano"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "cam_intrinsics.txt").write_text(_line([K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height]))
    for f in range(c2w.shape[0]):
        stem = f"{f:06d}"
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(folder / "rgb" / f"{stem}.png")
        Image.fromarray(rng.integers(300, 1500, size=(height, width)).astype(np.uint16)).save(folder / "depth" / f"{stem}.png")
        (folder / "cam_pose" / f"{stem}.txt").write_text(_line(c2w[f]))
        w2c = np.linalg.inv(c2w[f])
        joints_cam = joints_world[f] @ w2c[:3, :3].T + w2c[:3, 3]
        (folder / "hand_pose" / f"{stem}.txt").write_text(_line(_hand_pose_line(joints_cam, valid[f])))
        (folder / "hand_pose_mano" / f"{stem}.txt").write_text(_line(mano[f]))


def _write_sequence(
    folder: Path, templates: dict[str, HandTemplate], rng: np.random.Generator, num_frames: int, width: int, height: int
) -> None:
    focal = 0.9 * width
    K = np.array([[focal * rng.uniform(0.95, 1.05), 0.0, width / 2 + rng.uniform(-2, 2)],
                  [0.0, focal * rng.uniform(0.95, 1.05), height / 2 + rng.uniform(-2, 2)],
                  [0.0, 0.0, 1.0]])  # fmt: skip
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    base = Rotation.from_rotvec(rng.normal(scale=0.3, size=3))
    for f in range(num_frames):
        c2w[f, :3, :3] = (base * Rotation.from_rotvec(rng.normal(scale=0.05, size=3))).as_matrix()
        c2w[f, :3, 3] = rng.normal(scale=0.1, size=3) + [0.0, -0.3, 0.0]

    regions = {
        "left": np.array([1.0, 1.0, width / 2 - 1, height - 1.0]),
        "right": np.array([width / 2 + 1, 1.0, width - 1.0, height - 1.0]),
    }
    mano = np.zeros((num_frames, 2, 62))
    joints_world = np.zeros((num_frames, 2, 21, 3))
    valid = np.ones((num_frames, 2), bool)
    if num_frames > MISSING_RIGHT_FRAME:
        valid[MISSING_RIGHT_FRAME, 1] = False
    for f in range(num_frames):
        for slot, side in enumerate(("left", "right")):
            if valid[f, slot]:
                mano[f, slot], joints_cam = _place_hand(rng, templates[side], K, regions[side])
                joints_world[f, slot] = joints_cam @ c2w[f, :3, :3].T + c2w[f, :3, 3]

    _write_camera(folder / EGO, rng, K, width, height, c2w, joints_world, valid, mano.reshape(num_frames, 124))
    centre = c2w[0, :3, :3] @ np.array([0.0, 0.0, 0.4]) + c2w[0, :3, 3]
    for i, name in enumerate(STATIC):
        angle = np.pi / 2 * i + rng.uniform(-0.3, 0.3)
        position = centre + 0.8 * np.array([np.sin(angle), -0.3, np.cos(angle)])
        view_c2w = np.tile(_look_at(position, centre), (num_frames, 1, 1))
        view_K = K.copy()
        view_K[:2, :2] *= rng.uniform(0.8, 1.2)
        view_mano = np.stack(
            [
                np.concatenate(
                    [
                        _mano_in_other_camera(mano[f, slot], templates[side], np.linalg.inv(view_c2w[f]) @ c2w[f])
                        for slot, side in enumerate(("left", "right"))
                    ]
                )
                for f in range(num_frames)
            ]
        )
        _write_camera(folder / name, rng, view_K, width, height, view_c2w, joints_world, valid, view_mano)


def write_h2o_fixture(
    root: Path,
    mano_dir: Path,
    *,
    subjects: tuple[str, ...] = ("subject4",),
    actions: tuple[str, ...] = ("h1",),
    sequences: tuple[int, ...] = (0,),
    num_frames: int = 4,
    width: int = 64,
    height: int = 36,
    seed: int = 0,
) -> Path:
    """Writes ``<root>/<subject>/<action>/<n>/cam0..cam4`` for every combination; returns ``root``.

    ``mano_dir`` holds ``MANO_LEFT.pkl`` and ``MANO_RIGHT.pkl`` (the hands are posed with them,
    flat_hand_mean=True, left shapedirs as in the file). Each sequence gets its own random
    cameras and hands from ``seed``.
    """
    root = Path(root)
    templates = {
        side: load_mano(Path(mano_dir) / f"MANO_{side.upper()}.pkl", flat_hand_mean=True).to(dtype=torch.float64)
        for side in ("left", "right")
    }
    index = 0
    for subject in subjects:
        for action in actions:
            for n in sequences:
                rng = np.random.default_rng([seed, index])
                _write_sequence(root / subject / action / str(n), templates, rng, num_frames, width, height)
                index += 1
    return root
