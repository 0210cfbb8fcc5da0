"""Temporal smoothing of the pseudo-labels used as training targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hand4dgs_ns.datamanager import smoothed_pseudo_labels
from hand4dgs_ns.eval.metrics import acceleration_error_mm, sequence_pose_errors
from hand4dgs_ns.geometry.temporal import smooth_tracks, valid_runs


def test_valid_runs_are_the_stretches_of_usable_frames():
    valid = torch.tensor([False, True, True, False, True, False, False, True])
    assert valid_runs(valid) == [(1, 3), (4, 5), (7, 8)]
    assert valid_runs(torch.zeros(3, dtype=torch.bool)) == []


def test_smoothing_removes_jitter_and_keeps_steady_motion():
    frames = torch.arange(60, dtype=torch.float32)
    motion = torch.stack([0.01 * frames, 0.02 * torch.ones_like(frames), -0.005 * frames], -1)  # m, constant velocity
    tracks = motion[:, None, None].expand(60, 2, 21, 3).clone()
    jitter = 0.005 * torch.randn(tracks.shape, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(60, 2, dtype=torch.bool)
    smoothed = smooth_tracks(tracks + jitter, valid, 2.0)
    clean = smooth_tracks(tracks, valid, 2.0)
    # Away from the ends (4 sigma), a constant-velocity track is left as it is.
    torch.testing.assert_close(clean[8:-8], tracks[8:-8])
    truth = tracks[:, 0]
    before = float(acceleration_error_mm(tracks[:, 0] + jitter[:, 0], truth, valid[:, 0]))
    after = float(acceleration_error_mm(smoothed[:, 0], truth, valid[:, 0]))
    assert after < 0.1 * before
    torch.testing.assert_close(smooth_tracks(tracks + jitter, valid, 0.0), tracks + jitter)


def test_smoothing_never_mixes_across_unusable_frames():
    tracks = torch.zeros(10, 2, 3)
    tracks[:4, 0] = 1.0
    tracks[4, 0] = 99.0  # an unusable frame's meaningless value
    tracks[5:, 0] = -1.0
    tracks[:, 1] = torch.arange(10.0)[:, None] ** 2
    valid = torch.ones(10, 2, dtype=torch.bool)
    valid[4, 0] = False
    out = smooth_tracks(tracks, valid, 3.0)
    torch.testing.assert_close(out[:4, 0], torch.ones(4, 3))
    torch.testing.assert_close(out[5:, 0], -torch.ones(5, 3))
    assert float(out[4, 0, 0]) == 99.0  # left as it was
    assert not torch.allclose(out[:, 1], tracks[:, 1])  # the other hand is smoothed on its own


def test_training_targets_are_smoothed_and_evaluation_reports_both_label_rows(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=12)
    assert config.pipeline.datamanager.pseudo_label_smoothing == 0.05  # on by default
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    dm = pipe.datamanager
    sequence = dm.hands.sequences[0]
    expected = smoothed_pseudo_labels(sequence, 0.05)
    torch.testing.assert_close(expected.pseudo_joints, smooth_tracks(sequence.pseudo_joints, sequence.valid, 0.05 * sequence.fps))
    assert not torch.allclose(expected.pseudo_joints, sequence.pseudo_joints)
    cached = dm._train[0]
    torch.testing.assert_close(cached.targets["pseudo_joints"], expected.pseudo_joints[cached.frames])
    torch.testing.assert_close(cached.targets["pseudo_verts"], expected.pseudo_verts[cached.frames])
    _, batch = dm.next_train(0)
    frames = batch["frame_index"].cpu()
    torch.testing.assert_close(batch["pseudo_joints"].cpu(), expected.pseudo_joints[frames])
    # Evaluation: the raw labels' row as before, and the smoothed labels' own row beside it.
    metrics = pipe.pose_metrics()
    raw = pipe.datamanager.hands.sequences[0]
    valid = raw.gt_valid & raw.valid
    want_raw = sequence_pose_errors(raw.pseudo_joints, raw.gt_joints, valid)
    want_smooth = sequence_pose_errors(expected.pseudo_joints, raw.gt_joints, valid)
    for key in ("mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm"):
        assert metrics[f"pseudo_{key}"] == pytest.approx(want_raw[key])
        assert metrics[f"smoothed_pseudo_{key}"] == pytest.approx(want_smooth[key])
    assert np.isfinite(metrics["mpjpe_mm"])


def test_zero_smoothing_trains_on_the_labels_as_given(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=12)
    config.pipeline.datamanager.pseudo_label_smoothing = 0.0
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    sequence = pipe.datamanager.hands.sequences[0]
    cached = pipe.datamanager._train[0]
    torch.testing.assert_close(cached.targets["pseudo_joints"], sequence.pseudo_joints[cached.frames])
    metrics = pipe.pose_metrics()
    assert "pseudo_mpjpe_mm" in metrics and not any(k.startswith("smoothed_pseudo_") for k in metrics)
