"""The joint error plot: per-frame values, gaps, and a PNG with a line per series."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb

from hand4dgs_ns.eval.metrics import sequence_pose_errors
from hand4dgs_ns.inference.plots import PLOT_SIZE_PX, SERIES_COLOURS, per_frame_errors_mm, write_joint_error_plot


def _hands(num_frames: int = 40):  # (F, 2, 21, 3) model, pseudo-label and ground-truth joints (m), (F, 2) validity
    gt = torch.randn(num_frames, 2, 21, 3, generator=torch.Generator().manual_seed(0)) * 0.05
    model = gt + torch.tensor([0.01, 0.0, 0.0])  # left hand 10 mm off
    model[:, 1] += torch.tensor([0.0, 0.02, 0.0])  # right hand (10, 20, 0) mm off
    pseudo = gt + torch.tensor([0.0, 0.0, 0.02])  # 20 mm off
    valid = torch.ones(num_frames, 2, dtype=torch.bool)
    valid[5:9] = False  # no hand: a gap
    valid[12, 1] = False  # only the left hand
    return model, pseudo, gt, valid


def test_per_frame_errors_average_the_valid_hands_and_leave_gaps():
    model, pseudo, gt, valid = _hands()
    per_frame, mean = per_frame_errors_mm(model, gt, valid)
    right = math.hypot(10.0, 20.0)
    assert np.isnan(per_frame[5:9]).all()
    assert per_frame[12] == pytest.approx(10.0, abs=1e-3)
    assert per_frame[0] == pytest.approx((10.0 + right) / 2, abs=1e-3)
    assert mean == pytest.approx(sequence_pose_errors(model, gt, valid)["mpjpe_mm"], abs=1e-4)  # metrics.json's mpjpe_mm
    assert per_frame_errors_mm(pseudo, gt, valid)[1] == pytest.approx(20.0, abs=1e-3)
    assert math.isnan(per_frame_errors_mm(model, gt, torch.zeros_like(valid))[1])


def test_joint_error_plot_is_a_png_with_one_line_per_series(tmp_path):
    model, pseudo, gt, valid = _hands()
    path = tmp_path / "joint_error.png"
    write_joint_error_plot(path, model, pseudo, gt, valid, title="clip")
    image = cv2.imread(str(path))
    assert image is not None and (image.shape[1], image.shape[0]) == PLOT_SIZE_PX
    rgb = image[..., ::-1].astype(np.int32)
    for name, colour in SERIES_COLOURS.items():
        target = np.array(to_rgb(colour)) * 255
        columns = (np.abs(rgb - target).max(axis=-1) < 40).any(axis=0).sum()
        assert columns > PLOT_SIZE_PX[0] // 2, name  # a line across the axes, not just the legend's sample


def test_joint_error_plot_without_any_valid_hand(tmp_path):
    model, pseudo, gt, valid = _hands()
    path = tmp_path / "joint_error.png"
    write_joint_error_plot(path, model, pseudo, gt, torch.zeros_like(valid))
    assert cv2.imread(str(path)).shape[:2] == PLOT_SIZE_PX[::-1]


def test_skeletons_skip_joints_behind_or_far_off_the_camera():
    import numpy as np

    from hand4dgs_ns.render.skeletons import draw_skeletons

    joints = np.zeros((2, 21, 2))
    joints[0] = np.stack([np.linspace(5, 35, 21), np.full(21, 20.0)], axis=1)  # a row of joints
    joints[0, 4] = np.nan  # behind the camera
    joints[0, 8] = (1e12, -1e12)  # projected from just in front of the camera plane
    image = draw_skeletons(np.zeros((40, 40, 3), np.uint8), joints, np.array([True, False]))
    assert image[20, 5:35].any(), "the rest of the hand is drawn"
    assert not image[:15].any() and not image[26:].any(), "no stray line leaves the hand's row"
