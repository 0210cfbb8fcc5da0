"""A tiny ARCTIC dataset on disk, in the exact layout of the real one (docs/formats.md section 3).

:func:`write_arctic_fixture` writes, under ``<root>/data/arctic_data/data/``::

    raw_seqs/<sid>/<seq>.mano.npy         np.save of {"right": {...}, "left": {...}}, each with
                                          rot (F,3), pose (F,45), trans (F,3), fitting_err (F,),
                                          shape (10,) for the right hand and (F,10) for the left
                                          (ARCTIC has both forms)
    raw_seqs/<sid>/<seq>.egocam.dist.npy  np.save of {R_k_cam_np (F,3,3), T_k_cam_np (F,3,1)
                                          world-to-camera, intrinsics (3,3), dist8 (8,), R0, T0}
    raw_seqs/<sid>/<seq>.object.npy       (F,7): articulation (rad), axis-angle, translation
    images/<sid>/<seq>/{0..8}/NNNNN.jpg   view 0 egocentric (width x height), views 1-8 static;
                                          numbered 00001 .. ioi_offset+F+1, so that images exist
                                          before (when ioi_offset > 1) and after the F annotated ones
    cropped_images/<sid>/<seq>/0/NNNNN.jpg view 0 resized by 0.3, annotated frames only (as
                                          ARCTIC's crop_images.py writes them)
    meta/misc.json                        {sid: {ioi_offset, image_size [[W,H]] x 9,
                                          world2cam (8,4,4), intris_mat (8,3,3), gender}}

Values are random but valid: both hands near the world origin (left at x = -0.08 m, right at
+0.08 m), the egocentric camera 0.45 m away looking at them with a mild rational lens
distortion, the static cameras on a 0.8 m circle around them. Frames are smooth random colour
fields (so that undistortion moves something a JPEG keeps).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

DATA_SUBDIR = Path("data") / "arctic_data" / "data"
CROPPED_SCALE = 0.3
NUM_VIEWS = 8


def arctic_fixture_data_dir(root: Path) -> Path:
    """The ``data/arctic_data/data`` folder of a fixture written at ``root``."""
    return Path(root) / DATA_SUBDIR


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera 4x4 of an OpenCV camera at ``position`` looking at ``target`` (y roughly down)."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, np.array([0.0, -1.0, 0.0]))
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = -rotation @ position
    return w2c


def _frame(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(max(2, height // 10), max(2, width // 10), 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def _write_jpg(file: Path, image: np.ndarray) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(file), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def write_arctic_fixture(
    root: Path,
    subjects: tuple[str, ...] = ("s05",),
    sequences: tuple[str, ...] = ("box_grab_01",),
    *,
    num_annotated: int = 10,
    ioi_offset: int = 2,
    width: int = 200,
    height: int = 140,
    views: bool = True,
    cropped: bool = True,
    static_cameras_in_misc: bool = True,
    seed: int = 0,
) -> Path:
    """Writes every sequence of ``sequences`` for every subject of ``subjects``; returns ``root``.

    Args:
        num_annotated: F, the annotated frames per sequence.
        ioi_offset: image number minus this = annotation index (misc.json).
        width, height: full-resolution view 0 (and static view) size; cropped frames are
            ``int(0.3 * width) x int(0.3 * height)``.
        views: write the images of static views 1-8.
        cropped: write ``cropped_images`` for view 0.
        static_cameras_in_misc: put ``world2cam`` and ``intris_mat`` into misc.json.
    """
    rng = np.random.default_rng(seed)
    data = arctic_fixture_data_dir(root)
    num_images = ioi_offset + num_annotated + 1
    K = np.array([[0.8 * width, 0.0, width / 2 + 1.3], [0.0, 0.8 * width, height / 2 - 0.7], [0.0, 0.0, 1.0]])
    static_K = np.array([[0.9 * width, 0.0, width / 2], [0.0, 0.9 * width, height / 2], [0.0, 0.0, 1.0]])
    misc = {}
    for sid in subjects:
        angles = np.arange(NUM_VIEWS) * 2 * np.pi / NUM_VIEWS + 0.2
        world2cam = np.stack(
            [_look_at(np.array([0.8 * np.sin(a), -0.3, 0.8 * np.cos(a)]), np.zeros(3)) for a in angles]
        )
        misc[sid] = {"ioi_offset": ioi_offset, "image_size": [[width, height]] * 9, "gender": "female"}
        if static_cameras_in_misc:
            misc[sid]["world2cam"] = world2cam.tolist()
            misc[sid]["intris_mat"] = np.repeat(static_K[None], NUM_VIEWS, axis=0).tolist()
        for seq in sequences:
            raw = data / "raw_seqs" / sid
            raw.mkdir(parents=True, exist_ok=True)
            f = num_annotated
            hands = {}
            for side, x in (("left", -0.08), ("right", 0.08)):
                hands[side] = {
                    "rot": rng.normal(scale=0.3, size=(f, 3)),
                    "pose": rng.normal(scale=0.2, size=(f, 45)),
                    "trans": np.array([x, 0.0, 0.0]) + rng.normal(scale=0.01, size=(f, 3)),
                    "shape": rng.normal(scale=0.5, size=10) if side == "right" else rng.normal(scale=0.5, size=(f, 10)),
                    "fitting_err": rng.random(f) * 1e-3,
                }
            np.save(raw / f"{seq}.mano.npy", hands)
            w2c = np.stack(
                [
                    _look_at(
                        np.array([0.0, -0.15, -0.42]) + rng.normal(scale=0.01, size=3), rng.normal(scale=0.01, size=3)
                    )
                    for _ in range(f)
                ]
            )
            dist8 = np.array([-0.08, 0.02, 0.001, -0.0015, 0.003, 0.01, 0.002, 0.001]) + rng.normal(scale=1e-3, size=8)
            egocam = {
                "R_k_cam_np": w2c[:, :3, :3],
                "T_k_cam_np": w2c[:, :3, 3:4],
                "intrinsics": K.copy(),
                "dist8": dist8,
                "ego_markers.ref": rng.normal(size=(4, 3)),
                "ego_markers.label": ["m0", "m1", "m2", "m3"],
                "R0": np.eye(3),
                "T0": np.zeros((3, 1)),
            }
            np.save(raw / f"{seq}.egocam.dist.npy", egocam)
            np.save(raw / f"{seq}.object.npy", np.concatenate([np.zeros((f, 1)), rng.normal(size=(f, 6))], axis=1))

            for number in range(1, num_images + 1):
                full = _frame(rng, width, height)
                _write_jpg(data / "images" / sid / seq / "0" / f"{number:05d}.jpg", full)
                if cropped and 0 <= number - ioi_offset < num_annotated:
                    small = cv2.resize(
                        full, (int(width * CROPPED_SCALE), int(height * CROPPED_SCALE)), interpolation=cv2.INTER_AREA
                    )
                    _write_jpg(data / "cropped_images" / sid / seq / "0" / f"{number:05d}.jpg", small)
                if views:
                    for view in range(1, NUM_VIEWS + 1):
                        _write_jpg(
                            data / "images" / sid / seq / str(view) / f"{number:05d}.jpg", _frame(rng, width, height)
                        )
    (data / "meta").mkdir(parents=True, exist_ok=True)
    (data / "meta" / "misc.json").write_text(json.dumps(misc))
    return Path(root)
