"""Pose and image metrics against hand-computed values."""

import math

import torch

from hand4dgs_ns.eval.metrics import acceleration_error_mm, crop_image_metrics, mpjpe_mm, ra_mpjpe_mm


def test_mpjpe_and_root_alignment():
    gt = torch.randn(4, 21, 3, generator=torch.Generator().manual_seed(0))
    shifted = gt + torch.tensor([0.01, 0.0, 0.0])  # 10 mm translation
    torch.testing.assert_close(mpjpe_mm(shifted, gt), torch.tensor(10.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(ra_mpjpe_mm(shifted, gt), torch.tensor(0.0), atol=1e-4, rtol=0)


def test_mpjpe_masks_invalid_hands():
    gt = torch.zeros(3, 21, 3)
    pred = gt.clone()
    pred[2] += 1.0  # an invalid hand far off must not count
    valid = torch.tensor([True, True, False])
    torch.testing.assert_close(mpjpe_mm(pred, gt, valid), torch.tensor(0.0))
    assert math.isnan(float(mpjpe_mm(pred, gt, torch.zeros(3, dtype=torch.bool))))


def test_acceleration_error_known_value():
    frames = 10
    gt = torch.zeros(frames, 21, 3)
    pred = gt.clone()
    pred[5, 1:, 0] = 0.002  # 2 mm spike on every non-wrist joint in one frame
    # a_4 = +2, a_5 = -4, a_6 = +2 mm on 20 of 21 joints; mean over the 8 interior frames.
    expected = (2 + 4 + 2) * 20 / 21 / 8
    torch.testing.assert_close(acceleration_error_mm(pred, gt), torch.tensor(expected), rtol=1e-5, atol=1e-5)
    # Constant-velocity motion has no acceleration error.
    moving = gt + torch.arange(frames).float()[:, None, None] * 0.01
    torch.testing.assert_close(acceleration_error_mm(moving, gt), torch.tensor(0.0))
    valid = torch.ones(frames, dtype=torch.bool)
    valid[5] = False  # the spike's frame and its neighbours' windows drop out
    torch.testing.assert_close(acceleration_error_mm(pred, gt, valid), torch.tensor(0.0))


def test_crop_image_metrics():
    gt = torch.rand(60, 80, 3)
    pred = gt.clone()
    pred[10:30, 10:30] = (pred[10:30, 10:30] + 0.1).clamp(0, 1)
    psnr, ssim = crop_image_metrics(pred, gt, torch.tensor([[40.0, 30.0, 70.0, 58.0], [10.0, 10.0, 30.0, 30.0], [0, 0, 3, 3]]))
    assert len(psnr) == 2 and len(ssim) == 2  # the 3x3 box is skipped
    assert math.isinf(psnr[0]) and abs(ssim[0] - 1.0) < 1e-6
    assert 15 < psnr[1] < 25 and ssim[1] < 1.0


def test_mask_boxes_bound_each_hand_label():
    from hand4dgs_ns.eval.metrics import mask_boxes

    labels = torch.zeros(20, 30, dtype=torch.uint8)
    labels[2:6, 3:9] = 1
    labels[10:19, 20:25] = 2
    labels[0, 0] = 3  # an occluder is no hand
    torch.testing.assert_close(mask_boxes(labels), torch.tensor([[3.0, 2, 9, 6], [20, 10, 25, 19]]))
    assert mask_boxes(torch.zeros(4, 4, dtype=torch.uint8)).shape == (0, 4)
