"""Pose and image metrics against hand-computed values."""

import math

import pytest
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


def test_occluded_pixels_neither_reward_nor_punish():
    """Mask label 3 (an occluder in front of where a hand may be) is left out of the image loss and
    of the crop metrics: a render that draws the hand there scores as one that does not."""
    from hand4dgs_ns.eval.metrics import hand_crop_metrics
    from hand4dgs_ns.model.losses import image_loss, occlusion_aware_pair

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 24, 24, 3, generator=g)
    labels = torch.zeros(1, 24, 24, dtype=torch.uint8)
    labels[:, 4:20, 4:20] = 2
    labels[:, 12:20, 4:20] = 3  # a forearm over the lower half of the hand
    black = torch.zeros(1, 3)
    hand = (labels == 2)[..., None].float()
    perfect_visible = image * hand  # the visible hand, background elsewhere (also under the occluder)
    drawn_under = perfect_visible.clone()
    drawn_under[:, 12:20, 4:20] = 0.7  # the same, plus a guess of the hidden part

    def loss(render):
        rgb, target = occlusion_aware_pair(render.requires_grad_(), image, labels, black)
        value = image_loss(rgb, target, 0.2)[0]
        value.backward()
        return float(value), render.grad

    (a, _), (b, grad) = loss(perfect_visible.clone()), loss(drawn_under.clone())
    assert a == pytest.approx(b, abs=1e-7)
    assert grad[:, 12:20, 4:20].abs().max() == 0, "no gradient reaches the pixels an occluder covers"
    box = torch.tensor([[4.0, 4.0, 20.0, 20.0]])
    first = hand_crop_metrics(perfect_visible[0], image[0], labels[0], box)
    second = hand_crop_metrics(drawn_under[0], image[0], labels[0], box)
    assert first == second
    worse = perfect_visible.clone()
    worse[:, 4:12, 4:20] = 0.7  # wrong where the hand is visible: that counts
    assert hand_crop_metrics(worse[0], image[0], labels[0], box)[0][0] < first[0][0]


def test_square_boxes_are_twice_the_longer_side_around_the_centre():
    from hand4dgs_ns.eval.metrics import square_boxes

    boxes = torch.tensor([[10.0, 20.0, 30.0, 30.0]])  # 20 wide, 10 tall, centre (20, 25)
    torch.testing.assert_close(square_boxes(boxes), torch.tensor([[0.0, 5.0, 40.0, 45.0]]))
