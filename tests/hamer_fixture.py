"""Test fixtures for HaMeR pseudo-labels: a small dataset video and HaMeR files consistent with known hands.

:func:`make_dataset_sequence` writes random frames and returns a
:class:`~hand4dgs_ns.datasets.base.DatasetSequence` built directly (no dataset reader)::

    <folder>/rgb/<frame_id>.png     random uint8 frames, frame ids 000000, 000005, 000010, ...
    <folder>/hamer/                 seq.hamer_dir (not created)

Its cameras are anisotropic (fx != fy), with the principal point away from the image centre
and a focal length unlike HaMeR's ``5000 / 256 * max(W, H)``; the camera moves from frame to
frame. The left box sits in the left part of the image, the right box in the right part; the
right box of frame 1 is unusable.

:func:`write_hamer_fixture` writes ``<seq.hamer_dir>/<frame_id>.npz`` for every frame
(docs/formats.md section 5): known MANO hands (right-hand MANO from ``MANO_RIGHT.pkl``, random
rotations and shape) are placed in each camera at the boxes, and the files hold what HaMeR
would output for them: the right-hand MANO of the mirror image for the left hand (vertices,
joints, rotations), and ``cam_t_full`` for HaMeR's camera (focal ``f_H``, principal point at
the image centre). That translation is derived here from the documented conversion (the
hand's joint centre keeps its pixel, depth scales by ``f_H / sqrt(fx fy)``), independently of
the package's code, so importing the files must give back the known hands exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hand4dgs_ns.data.sequence_format import SequenceCameras
from hand4dgs_ns.datasets.base import DatasetSequence
from hand4dgs_ns.datasets.hamer import HamerFrame, write_hamer_frame
from hand4dgs_ns.hands import hand_forward, load_mano

MIRROR = np.array([-1.0, 1.0, 1.0])


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula (numpy, independent of the package's rotations)."""
    angle = np.linalg.norm(axis_angle)
    if angle < 1e-12:
        return np.eye(3)
    k = axis_angle / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def make_dataset_sequence(
    folder: Path, *, num_frames: int = 4, width: int = 96, height: int = 72, seed: int = 0, name: str = "seq"
) -> DatasetSequence:
    """Writes ``num_frames`` random frames under ``folder`` and returns their :class:`DatasetSequence`."""
    rng = np.random.default_rng(seed)
    frame_ids = [f"{5 * i:06d}" for i in range(num_frames)]
    (folder / "rgb").mkdir(parents=True, exist_ok=True)
    image_paths = []
    for frame_id in frame_ids:
        path = folder / "rgb" / f"{frame_id}.png"
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
        image_paths.append(path)
    K = np.array([[90.0, 0.0, 0.45 * width + 3.0], [0.0, 84.0, 0.55 * height], [0.0, 0.0, 1.0]])
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    for f in range(num_frames):
        c2w[f, :3, :3] = _rotation(rng.normal(scale=0.5, size=3))
        c2w[f, :3, 3] = rng.normal(scale=0.3, size=3)
    K = np.tile(K, (num_frames, 1, 1)).astype(np.float32)
    cameras = SequenceCameras(K=K, c2w=c2w.astype(np.float32), fps=30.0, width=width, height=height)
    bbox = np.zeros((num_frames, 2, 4), np.float32)
    for f in range(num_frames):
        for slot, x in enumerate((0.3 * width, 0.7 * width)):
            centre = np.array([x, 0.5 * height]) + rng.normal(scale=2.0, size=2)
            half = np.array([14.0, 16.0]) + rng.normal(scale=1.0, size=2)
            bbox[f, slot] = np.concatenate([centre - half, centre + half])
    box_valid = np.ones((num_frames, 2), bool)
    if num_frames > 1:
        box_valid[1, 1] = False
        bbox[1, 1] = 0.0
    return DatasetSequence(
        dataset="h2o",
        name=name,
        root=folder,
        image_paths=image_paths,
        frame_ids=frame_ids,
        cameras=cameras,
        bbox=bbox,
        box_valid=box_valid,
        gt_joints=rng.normal(scale=0.1, size=(num_frames, 2, 21, 3)).astype(np.float32),
        gt_valid=box_valid.copy(),
        views={},
        hamer_dir=folder / "hamer",
    )


@dataclass(frozen=True)
class KnownHands:
    """The hands a fixture's HaMeR files describe, in float64."""

    valid: np.ndarray
    """(F, 2) slots written as valid (usable box and not dropped)."""
    verts_cam: np.ndarray
    """(F, 2, 778, 3) vertices in each frame's camera (OpenCV, metres), real (unmirrored) hands."""
    joints_cam: np.ndarray
    """(F, 2, 21, 3) joints in each frame's camera, OpenPose order."""
    verts_world: np.ndarray
    """(F, 2, 778, 3) vertices in the world frame."""
    joints_world: np.ndarray
    """(F, 2, 21, 3) joints in the world frame."""
    frames: tuple[HamerFrame, ...]
    """What was written, frame by frame."""


def _random_hands(template, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """``n`` right-hand MANO hands without translation, as HaMeR's network outputs them."""
    go = np.stack([_rotation(rng.normal(scale=1.0, size=3)) for _ in range(n)])
    pose = np.stack([[_rotation(rng.normal(scale=0.3, size=3)) for _ in range(15)] for _ in range(n)])
    betas = rng.normal(scale=1.0, size=(n, 10))
    zero = torch.zeros(n, 3, dtype=torch.float64)
    out = hand_forward(template, torch.from_numpy(go), torch.from_numpy(pose), torch.from_numpy(betas), zero)
    return go, pose, betas, out.vertices.numpy(), out.joints.numpy()


def hamer_cam_t_full(anchor_cam: np.ndarray, centre: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """What HaMeR's ``cam_t_full`` is for a hand whose joint centre is at ``anchor_cam`` in camera ``K``.

    ``centre`` is the unmirrored hand's joint centre without translation. The centre keeps its
    pixel, its depth scales by ``f_H / sqrt(fx fy)``, and HaMeR's camera has its principal point
    at the image centre.
    """
    f_h = 5000.0 / 256.0 * max(width, height)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = fx * anchor_cam[0] / anchor_cam[2] + cx
    v = fy * anchor_cam[1] / anchor_cam[2] + cy
    z = anchor_cam[2] * f_h / np.sqrt(fx * fy)
    anchor_hamer = np.array([(u - width / 2) * z / f_h, (v - height / 2) * z / f_h, z])
    return anchor_hamer - centre


def write_hamer_fixture(
    seq: DatasetSequence,
    mano_dir: Path,
    *,
    seed: int = 0,
    drop: tuple[tuple[int, int], ...] = (),
    tokens: bool = False,
) -> KnownHands:
    """Writes a HaMeR file for every frame of ``seq``, consistent with known hands; returns them.

    Args:
        seq: the video; a hand is written as valid where its box is usable and ``(frame, slot)``
            is not in ``drop`` (HaMeR found nothing there); other slots are zeros, as the runner
            writes them.
        mano_dir: holds ``MANO_RIGHT.pkl`` (HaMeR predicts right-hand MANO).
        seed: the hands' random rotations and shapes.
        tokens: also write random float16 ``vit_tokens``.

    Each valid hand's joint centre lies on the ray through its box centre, at the depth that
    makes the hand's vertices about as wide as the box; invalid slots still get a known hand (not
    written) placed in the image's left or right part.
    """
    rng = np.random.default_rng(seed)
    template = load_mano(Path(mano_dir) / "MANO_RIGHT.pkl").to(dtype=torch.float64)
    F = seq.num_frames
    W, H = seq.cameras.width, seq.cameras.height
    go, pose, betas, verts_raw, kp3d_raw = (a.reshape(F, 2, *a.shape[1:]) for a in _random_hands(template, rng, 2 * F))
    valid = np.asarray(seq.box_valid, bool).copy()
    for f, slot in drop:
        valid[f, slot] = False
    verts_cam = np.zeros((F, 2, verts_raw.shape[2], 3))
    joints_cam = np.zeros((F, 2, 21, 3))
    cam_t_full = np.zeros((F, 2, 3))
    for f in range(F):
        K = np.asarray(seq.cameras.K[f], np.float64)
        for slot in range(2):
            sign = MIRROR if slot == 0 else np.ones(3)  # the real left hand is the mirror of HaMeR's output
            joints = kp3d_raw[f, slot] * sign
            centre = joints.mean(axis=0)
            if seq.box_valid[f, slot]:
                x0, y0, x1, y1 = np.asarray(seq.bbox[f, slot], np.float64)
                u, v, box_side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
            else:
                u, v, box_side = (0.3 if slot == 0 else 0.7) * W, 0.5 * H, 0.3 * W
            extent = np.ptp(verts_raw[f, slot, :, :2], axis=0).max()
            z = float(np.clip(np.sqrt(K[0, 0] * K[1, 1]) * extent / box_side, 0.25, 3.0))
            anchor = np.array([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z])
            verts_cam[f, slot] = verts_raw[f, slot] * sign + anchor - centre
            joints_cam[f, slot] = joints + anchor - centre
            cam_t_full[f, slot] = hamer_cam_t_full(anchor, centre, K, W, H)
    c2w = np.asarray(seq.cameras.c2w, np.float64)

    def world(points: np.ndarray) -> np.ndarray:
        return np.einsum("fij,fhnj->fhni", c2w[:, :3, :3], points) + c2w[:, None, None, :3, 3]

    frames = []
    for f in range(F):
        keep = valid[f]

        def slots(a: np.ndarray, keep: np.ndarray = keep) -> np.ndarray:
            return np.where(keep.reshape((2,) + (1,) * (a.ndim - 2)), a[f], 0.0).astype(np.float32)

        frame = HamerFrame(
            valid=keep.copy(),
            bbox_xyxy=slots(np.asarray(seq.bbox, np.float64)),
            global_orient=slots(go),
            hand_pose=slots(pose),
            betas=slots(betas),
            verts=slots(verts_raw),
            kp3d=slots(kp3d_raw),
            cam_t_full=slots(cam_t_full),
            vit_tokens=rng.normal(size=(2, 192, 1280)).astype(np.float16) if tokens else None,
        )
        write_hamer_frame(seq.hamer_dir / f"{seq.frame_ids[f]}.npz", frame)
        frames.append(frame)
    return KnownHands(
        valid=valid,
        verts_cam=verts_cam,
        joints_cam=joints_cam,
        verts_world=world(verts_cam),
        joints_world=world(joints_cam),
        frames=tuple(frames),
    )

