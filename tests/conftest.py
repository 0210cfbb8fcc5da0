"""Shared fixtures: tiny, valid, random sequences in the project's sequence format v1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from hand4dgs_ns.data.sequence_format import SequenceCameras, SequenceHands, SequenceWriter


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def orbit_c2w(num_frames: int, radius: float = 0.5, sweep: float = 0.3, offset: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world poses on an arc of ``radius`` around the origin, each looking at it."""
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    for i, angle in enumerate(np.linspace(-sweep / 2, sweep / 2, num_frames) + offset):
        rotation = _rotation_y(angle)
        c2w[i, :3, :3] = rotation
        c2w[i, :3, 3] = -radius * rotation[:, 2]  # the camera's +z (forward) axis points at the origin
    return c2w


def project(K: np.ndarray, c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates of world points (..., 3) seen by an OpenCV camera."""
    w2c = np.linalg.inv(c2w)
    p_cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uvw = p_cam @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def write_random_sequence(
    out: Path,
    *,
    num_frames: int = 6,
    width: int = 64,
    height: int = 48,
    seed: int = 0,
    masks: bool = True,
    pseudo_verts: int | None = 12,
    ground_truth: bool = True,
    views: tuple[str, ...] = (),
    fps: float = 30.0,
) -> Path:
    """Writes a small valid sequence with both hands near the world origin; returns its folder.

    The egocentric camera orbits the origin at 0.5 m; the right hand is missing in frame 1.
    """
    rng = np.random.default_rng(seed)
    K = np.array([[60.0, 0.0, width / 2], [0.0, 60.0, height / 2], [0.0, 0.0, 1.0]], np.float32)
    c2w = orbit_c2w(num_frames)
    hand_centres = np.array([[-0.06, 0.0, 0.0], [0.06, 0.0, 0.0]])
    joints = hand_centres[None, :, None] + rng.normal(scale=0.02, size=(num_frames, 2, 21, 3))
    valid = np.ones((num_frames, 2), bool)
    if num_frames > 1:
        valid[1, 1] = False
    bbox = np.zeros((num_frames, 2, 4))
    for f in range(num_frames):
        uv = project(K, c2w[f], joints[f])  # (2, 21, 2)
        bbox[f] = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=-1)
    hands = SequenceHands(
        bbox=bbox.astype(np.float32),
        valid=valid,
        pseudo_joints=joints.astype(np.float32),
        pseudo_verts=None
        if pseudo_verts is None
        else (joints[:, :, :1] + rng.normal(scale=0.03, size=(num_frames, 2, pseudo_verts, 3))).astype(np.float32),
        gt_joints=(joints + rng.normal(scale=0.005, size=joints.shape)).astype(np.float32) if ground_truth else None,
        gt_valid=valid.copy() if ground_truth else None,
    )
    cameras = SequenceCameras(
        K=np.broadcast_to(K, (num_frames, 3, 3)).copy(), c2w=c2w.astype(np.float32), fps=fps, width=width, height=height
    )
    views_cameras = {
        name: SequenceCameras(
            K=cameras.K.copy(),
            c2w=np.repeat(orbit_c2w(1, offset=1.0 + i)[None, 0], num_frames, axis=0).astype(np.float32),
            fps=fps,
            width=width,
            height=height,
        )
        for i, name in enumerate(views)
    }
    with SequenceWriter(out) as writer:
        for _ in range(num_frames):
            rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            mask = rng.integers(0, 3, size=(height, width), dtype=np.uint8) if masks else None
            writer.add_frame(rgb, mask)
            for name in views:
                view_mask = np.zeros((height, width), np.uint8)  # each hand a block, as a static camera sees them
                view_mask[height // 4 : height // 2, width // 8 : width // 2] = 1
                view_mask[height // 2 : 3 * height // 4, width // 2 : 7 * width // 8] = 2
                writer.add_view_frame(
                    name, rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), view_mask if masks else None
                )
        writer.finish(cameras, hands, views_cameras)
    return out


def tiny_trainer_config(root: Path, monkeypatch: pytest.MonkeyPatch, num_frames: int):
    """The per-video ``hand4dgs`` training config (100 steps) on a new random 80 x 60 clip of
    ``num_frames`` under ``root``, one Gaussian per face, its feature cache in ``root/cache``."""
    from hand4dgs_ns.method_configs import hand4dgs_trainer

    data = write_random_sequence(root / "clip", num_frames=num_frames, width=80, height=60)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(root / "cache"))
    config = hand4dgs_trainer(100)
    config.pipeline.datamanager.data = data
    config.pipeline.model.gaussians_per_face = 1
    return config


def tiny_pipeline(root: Path, monkeypatch: pytest.MonkeyPatch, num_frames: int, **model_options):
    """:func:`tiny_trainer_config`'s pipeline on the CPU (``model_options`` set on its model config),
    its weights moved off their zero-initialised values by seeded noise, so every head's output
    depends on the inputs (the same weights every run)."""
    config = tiny_trainer_config(root, monkeypatch, num_frames)
    for name, value in model_options.items():
        setattr(config.pipeline.model, name, value)
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pipe.model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return pipe


@pytest.fixture
def make_sequence(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_sequence("name", **options)`` writes a random sequence under ``tmp_path``."""

    def make(name: str = "seq", **options) -> Path:
        return write_random_sequence(tmp_path / name, **options)

    return make


@pytest.fixture
def tiny_sequence(make_sequence: Callable[..., Path]) -> Path:
    """A valid sequence folder: 6 frames of 64x48, both hands, masks, pseudo vertices and ground truth."""
    return make_sequence("tiny")
