"""The split of an absolute joint error into hand size, depth and lateral position."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hand4dgs_ns.eval.metrics import OPENPOSE_BONES, mpjpe_mm
from hand4dgs_ns.eval.placement import depth_error_spread_mm, hand_size, placement_errors, scaled_to_size, size_ambiguity_floor_mm


def _hands(frames: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Joints of ``frames`` x 2 hands about half a metre in front of moving cameras, and the cameras' centres."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(frames, 2, 3, generator=g, dtype=torch.float64) * 0.1
    shape = torch.randn(21, 3, generator=g, dtype=torch.float64) * 0.04
    joints = centres[..., None, :] + torch.tensor([0.05, -0.1, 0.5], dtype=torch.float64) + shape
    return joints, centres


def test_hand_size_is_the_summed_bone_length_and_ignores_rigid_motion():
    joints, _ = _hands(1)
    one = joints[0, 0]
    expected = sum(float((one[c] - one[p]).norm()) for p, c in OPENPOSE_BONES)
    assert float(hand_size(one)) == pytest.approx(expected)
    angle = 0.7
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]], dtype=torch.float64)
    assert float(hand_size(one @ rot.T + 0.3)) == pytest.approx(expected)


def test_a_hand_scaled_about_the_camera_is_all_depth_and_size():
    joints, centres = _hands()
    k = 0.9  # a smaller hand nearer the camera: the same image
    pred = centres[..., None, :] + (joints - centres[..., None, :]) * k
    errors = placement_errors(pred, joints, centres)
    distance = (joints[..., 0, :] - centres).norm(dim=-1)
    assert errors.size_ratio == pytest.approx(k)
    assert errors.depth_mm == pytest.approx(float(((k - 1) * distance).mean()) * 1000)
    assert errors.abs_depth_mm == pytest.approx(-errors.depth_mm)
    assert errors.lateral_mm == pytest.approx(0.0, abs=1e-6)
    assert errors.wrist_mm == pytest.approx(errors.abs_depth_mm)
    assert errors.mpjpe_mm == pytest.approx(float(mpjpe_mm(pred, joints)))


def test_a_hand_moved_across_the_ray_is_all_lateral():
    joints, centres = _hands()
    ray = joints[..., 0, :] - centres
    across = torch.linalg.cross(ray, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(ray))
    shift = 0.02 * across / across.norm(dim=-1, keepdim=True)  # 20 mm perpendicular to the ray
    errors = placement_errors(joints + shift[..., None, :], joints, centres)
    assert errors.lateral_mm == pytest.approx(20.0)
    assert errors.abs_depth_mm < 1.0  # second order: about 20^2 / (2 * 500) mm
    assert errors.size_ratio == pytest.approx(1.0)
    assert errors.ra_mpjpe_mm == pytest.approx(0.0, abs=1e-9)


def test_invalid_hands_do_not_count():
    joints, centres = _hands()
    pred = joints.clone()
    pred[0, 1] += 1.0  # a metre off, but not a valid hand
    valid = torch.ones(joints.shape[:2], dtype=torch.bool)
    valid[0, 1] = False
    errors = placement_errors(pred, joints, centres, valid)
    assert errors.mpjpe_mm == pytest.approx(0.0, abs=1e-9)
    assert errors.wrist_mm == pytest.approx(0.0, abs=1e-9)


def test_scaled_to_size_keeps_the_image_and_changes_the_size():
    joints, centres = _hands()
    typical = float(hand_size(joints).mean()) * 1.05
    moved = scaled_to_size(joints, centres, typical)
    torch.testing.assert_close(hand_size(moved), torch.full(joints.shape[:2], typical, dtype=torch.float64))
    rays = lambda x: torch.nn.functional.normalize(x - centres[..., None, :], dim=-1)  # noqa: E731
    torch.testing.assert_close(rays(moved), rays(joints))  # every joint on its own ray: the same image


def test_the_size_floor_is_the_error_of_the_typical_hand_seen_where_the_true_one_is():
    joints, centres = _hands()
    size = float(hand_size(joints).mean())  # every hand of _hands has this size
    assert size_ambiguity_floor_mm(joints, centres, typical_size=size) == pytest.approx(0.0, abs=1e-6)
    floor = size_ambiguity_floor_mm(joints, centres, typical_size=size * 1.05)
    assert floor == pytest.approx(float(mpjpe_mm(scaled_to_size(joints, centres, size * 1.05), joints)))
    distance = (joints - centres[..., None, :]).norm(dim=-1).mean() * 1000
    assert floor == pytest.approx(float(distance) * 0.05, rel=0.05)  # 5% of each joint's distance


def test_invalid_hands_holding_nan_do_not_reach_the_means():
    joints, centres = _hands()
    pred = joints.clone()
    pred[0, 1] = float("nan")  # the format allows any value in an invalid slot
    gt = joints.clone()
    gt[0, 1] = float("nan")
    valid = torch.ones(joints.shape[:2], dtype=torch.bool)
    valid[0, 1] = False
    errors = placement_errors(pred, gt, centres, valid)
    assert all(math.isfinite(v) for v in (errors.mpjpe_mm, errors.wrist_mm, errors.lateral_mm, errors.size_ratio))
    assert errors.mpjpe_mm == pytest.approx(0.0, abs=1e-9)
    assert math.isfinite(size_ambiguity_floor_mm(gt, centres, typical_size=0.9, valid=valid))


def test_the_script_names_the_missing_prediction_and_exits_1(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "splits.json").write_text(json.dumps({"train": ["train_000"], "test": ["test_000"]}))
    script = Path(__file__).parents[1] / "scripts" / "placement_errors.py"
    run = subprocess.run(
        [sys.executable, str(script), "--data", str(tmp_path / "set"), "--infer", str(tmp_path / "infer")], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'infer' / 'test_000' / 'hands.npz'}: does not exist; run hand4dgs infer on "
        f"{tmp_path / 'set' / 'test_000'} with --output-dir {tmp_path / 'infer'}."
    ]
    run = subprocess.run([sys.executable, str(script), "--data", str(tmp_path), "--infer", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1 and "splits.json: does not exist; pass a hand4dgs synth-set folder with --data" in run.stderr


def test_the_depth_error_spread_tells_a_slow_drift_from_frame_to_frame_noise():
    frames = 200
    joints, centres = _hands(frames)
    joints, centres = joints[:, 0], centres[:, 0]
    ray = joints[:, 0] - centres
    unit = ray / ray.norm(dim=-1, keepdim=True)
    valid = torch.ones(frames, dtype=torch.bool)
    drift = 0.03 * torch.sin(torch.linspace(0, math.pi, frames, dtype=torch.float64))  # slow, up to 30 mm
    std, step = depth_error_spread_mm(joints + (drift[:, None] * unit)[:, None], joints, centres, valid)
    assert std == pytest.approx(float(drift.std()) * 1000, rel=1e-6)
    assert step < 0.5
    noise = 0.01 * torch.randn(frames, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    std, step = depth_error_spread_mm(joints + (noise[:, None] * unit)[:, None], joints, centres, valid)
    assert step == pytest.approx(std, rel=0.15)  # white noise: all of it changes from frame to frame
    valid[5:] = False
    assert depth_error_spread_mm(joints, joints, centres, valid)[0] == pytest.approx(0.0)
    valid[2:] = False
    assert math.isnan(depth_error_spread_mm(joints, joints, centres, valid)[0])
