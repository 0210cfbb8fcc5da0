"""The split of an absolute joint error into hand size, depth and lateral position."""

import math

import pytest
import torch

from hand4dgs_ns.eval.metrics import OPENPOSE_BONES, mpjpe_mm
from hand4dgs_ns.eval.placement import hand_size, placement_errors, size_ambiguity_floor_mm


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


def test_the_size_floor_is_the_error_of_the_typical_hand_drawn_where_the_true_one_is_seen():
    joints, centres = _hands()
    size = float(hand_size(joints).mean())
    assert size_ambiguity_floor_mm(joints, centres, typical_size=size) == pytest.approx(0.0, abs=1e-6)
    typical = size * 1.05
    k = typical / hand_size(joints)
    typical_hand = centres[..., None, :] + (joints - centres[..., None, :]) * k[..., None, None]
    floor = size_ambiguity_floor_mm(joints, centres, typical_size=typical)
    assert floor == pytest.approx(float(mpjpe_mm(typical_hand, joints)))
    assert floor > 10.0  # 5% of about half a metre per joint
    assert placement_errors(typical_hand, joints, centres).size_ratio == pytest.approx(float(k.mean()))
