"""Temporal convolution, MLP heads, windows and losses."""

import torch

from hand4dgs_ns.eval.metrics import OPENPOSE_BONES, bone_lengths
from hand4dgs_ns.features.windows import window_indices
from hand4dgs_ns.network.layers import TemporalConv, mlp, squash_tokens
from hand4dgs_ns.model.losses import (
    LossSchedule,
    acceleration_loss,
    bone_length_loss,
    coarse_image_loss,
    image_loss,
    masked_target,
    occlusion_aware_pair,
    opacity_loss,
    outline_left_out,
    point_loss,
    silhouette_loss,
    vertex_loss,
)


def test_window_indices_replicate_edges():
    idx = window_indices(torch.tensor([0, 5, 9]), torch.tensor([10, 10, 10]), half_width=2)
    assert idx.tolist() == [[0, 0, 0, 1, 2], [3, 4, 5, 6, 7], [7, 8, 9, 9, 9]]
    assert window_indices(torch.tensor([0]), torch.tensor([1]), 1).tolist() == [[0, 0, 0]]


def test_temporal_conv_mixes_only_the_window_and_keeps_tokens_apart():
    tc = TemporalConv(in_dim=4, out_dim=3, window=5)
    x = torch.randn(2, 5, 7, 4)
    y = tc(x)
    assert y.shape == (2, 7, 3)
    x2 = x.clone()
    x2[:, :, 3] += 1.0  # changing token 3 must not change the other tokens' outputs
    y2 = tc(x2)
    torch.testing.assert_close(y2[:, [0, 1, 2, 4, 5, 6]], y[:, [0, 1, 2, 4, 5, 6]])


def test_mlp_last_layer_is_zero():
    net = mlp(10, 32, 5, layers=4)
    assert len([m for m in net if isinstance(m, torch.nn.Linear)]) == 4
    assert torch.count_nonzero(net(torch.randn(3, 10))) == 0


def test_squash_is_bounded_and_monotone():
    x = torch.linspace(-10, 10, 201)
    y = squash_tokens(x, scale=3.0)
    assert y.abs().max() < 1 and (y[1:] > y[:-1]).all()


def test_loss_schedule_and_losses():
    s = LossSchedule(image_start=100, vertex_decay_steps=50)
    assert s.vertex_weight(0) == 1 and s.image_weight(99) == 0 and s.image_weight(100) == 1
    assert s.vertex_weight(125) == 0.5 and s.vertex_weight(1000) == 0
    pred = torch.zeros(2, 2, 21, 3)
    target = torch.zeros(2, 2, 21, 3)
    target[0, 0] = 0.01
    target[1, 1] = 5.0  # invalid hand: ignored
    valid = torch.tensor([[True, True], [True, False]])
    torch.testing.assert_close(point_loss(pred, target, valid), torch.tensor(3e-4 / 3))
    img = torch.rand(2, 16, 16, 3)
    mask = torch.zeros(2, 16, 16, 1)
    mask[:, 4:12, 4:12] = 1
    bg = torch.tensor([[1.0, 1, 1], [0, 0, 0]])
    target_img = masked_target(img, mask, bg)
    assert torch.all(target_img[0, 0, 0] == 1) and torch.all(target_img[1, 0, 0] == 0)
    loss, l1, s = image_loss(target_img, target_img, 0.2)
    assert float(loss) < 1e-6 and float(s) > 0.999


def test_vertex_weight_floor():
    s = LossSchedule(image_start=100, vertex_decay_steps=50, vertex_floor=0.1)
    assert s.vertex_weight(99) == 1 and s.vertex_weight(125) == 0.5 and s.vertex_weight(1000) == 0.1
    at_once = LossSchedule(image_start=0, vertex_decay_steps=0, vertex_floor=0.25)  # a fixed share (TTO)
    assert at_once.vertex_weight(0) == at_once.vertex_weight(499) == 0.25


def test_wrist_relative_vertex_loss_ignores_placement_and_sees_articulation():
    torch.manual_seed(0)
    target = torch.randn(2, 2, 30, 3) * 0.05  # point 0 stands for the wrist joint
    valid = torch.tensor([[True, True], [True, False]])
    shifted = target + torch.tensor([0.02, -0.01, 0.03])  # every hand placed 3.7 cm off
    shifted[1, 1, 7:] += 0.5  # the invalid hand: far off, and not counted
    placed = vertex_loss(shifted, target, shifted, target, valid)
    assert torch.isclose(placed, torch.tensor(0.02**2 + 0.01**2 + 0.03**2))
    both = vertex_loss(shifted, target, shifted, target, valid, relative_weight=2.0)
    assert torch.isclose(both, placed)  # nothing to add: the valid hands' articulation is right
    bent = target.clone()
    bent[..., 5:, 2] += 0.01  # all but the first five points moved 1 cm, the wrist where it was
    placed = vertex_loss(bent, target, bent, target, valid)
    both = vertex_loss(bent, target, bent, target, valid, relative_weight=2.0)
    assert float(placed) > 0 and torch.isclose(both, 3 * placed)


def test_bone_length_loss_sees_the_hands_size_not_its_pose_or_placement():
    torch.manual_seed(0)
    target = torch.randn(2, 21, 3) * 0.04
    valid = torch.tensor([True, True])
    turn = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.7, 0.3], [0.7, 0.0, -0.2], [-0.3, 0.2, 0.0]]))
    moved = target @ turn.T + torch.tensor([0.1, -0.05, 0.2])  # turned and moved: the same bones
    assert float(bone_length_loss(moved, target, valid)) < 1e-12
    bent = target.clone()
    bent[:, 8] = target[:, 7] + (target[:, 8] - target[:, 7]) @ turn.T  # index tip turned about its joint
    assert float(bone_length_loss(bent, target, valid)) < 1e-12
    small = 0.8 * moved  # a hand 20% small
    expected = ((0.2 * bone_lengths(target)) ** 2).mean(-1).mean()
    torch.testing.assert_close(bone_length_loss(small, target, valid), expected)
    # The second hand far off in size but absent: not counted (absent hands' labels arrive zeroed,
    # SequenceTensors.from_sequence, so they are finite here as everywhere in training).
    small[1] *= 3.0
    only_first = ((0.2 * bone_lengths(target[0])) ** 2).mean()
    torch.testing.assert_close(bone_length_loss(small, target, torch.tensor([True, False])), only_first)
    assert [len(OPENPOSE_BONES), bone_lengths(target).shape[-1]] == [20, 20]


def test_outline_band_leaves_out_the_pixels_near_a_hand_outline_only():
    labels = torch.zeros(1, 12, 12, dtype=torch.uint8)
    labels[0, 3:9, 3:9] = 1  # a hand
    labels[0, 0, 11] = 3  # an occluder far from it
    assert torch.equal(outline_left_out(labels, 0), labels)
    banded = outline_left_out(labels, 1)
    ring = torch.zeros(12, 12, dtype=torch.bool)
    ring[2:10, 2:10] = True
    ring[4:8, 4:8] = False  # one pixel either side of the outline
    assert torch.equal(banded[0] == 3, ring | (labels[0] == 3))
    assert torch.equal(banded[0][4:8, 4:8], labels[0][4:8, 4:8])  # the hand's inside kept
    # The losses then ignore the band: a render one pixel off the outline costs nothing.
    alpha = torch.roll((labels == 1).float(), 1, dims=2)[..., None]
    assert float(silhouette_loss(alpha, labels)) > 0
    assert float(silhouette_loss(alpha, banded)) == 0.0


def test_silhouette_loss_counts_outline_disagreement_outside_occluders():
    labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    labels[0, 2:6, 2:6] = 2  # a hand
    alpha = (labels == 2).float()[..., None]
    assert float(silhouette_loss(alpha, labels)) == 0.0
    shifted = torch.roll(alpha, 1, dims=2)  # one column off: 4 pixels too many, 4 missing
    torch.testing.assert_close(silhouette_loss(shifted, labels), torch.tensor(8 / 64))
    labels[0, :, 6] = 3  # an occluder over the column the shifted render spills into
    torch.testing.assert_close(silhouette_loss(shifted, labels), torch.tensor(4 / 56))


def test_coarse_loss_keeps_growing_after_a_finger_has_left_its_outline():
    labels = torch.zeros(1, 32, 32, dtype=torch.uint8)
    labels[0, 12:16, 8:12] = 2  # a finger 4 pixels wide
    target = (labels == 2).float()[..., None].expand(-1, -1, -1, 3) * 0.8

    def drawn(dx: int) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.roll((labels == 2).float()[..., None], dx, dims=2)
        return alpha.expand(-1, -1, -1, 3) * 0.8, alpha

    shifts = (0, 2, 4, 6, 8)  # up to the coarsest cell's width beyond the finger's own
    coarse = [float(coarse_image_loss(drawn(dx)[0], target, drawn(dx)[1], labels, (4, 16))) for dx in shifts]
    full = [float(silhouette_loss(drawn(dx)[1], labels)) for dx in shifts]
    assert coarse[0] == 0.0 and all(a < b for a, b in zip(coarse, coarse[1:]))
    assert full[2] == full[3] == full[4]  # beyond its own width the full-resolution outline says nothing more

    labels[0, :, 16:] = 3  # an occluder over where the finger is drawn: those pixels agree
    black = torch.zeros(1, 3)
    render, alpha = drawn(8)
    pair = occlusion_aware_pair(render, target, labels, black)
    hidden = float(coarse_image_loss(*pair, alpha, labels, (4,)))
    nothing_drawn = float(coarse_image_loss(*occlusion_aware_pair(render * 0, target, labels, black), alpha * 0, labels, (4,)))
    assert hidden < coarse[-1] and hidden == nothing_drawn


def test_acceleration_loss_is_zero_for_constant_velocity():
    t = torch.arange(3.0)[:, None, None, None, None]
    path = torch.randn(1, 2, 21, 3) + 0.01 * t * torch.randn(1, 2, 21, 3)  # (3, 1, 2, 21, 3)
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert float(acceleration_loss(path[0], path[1], path[2], valid)) < 1e-12
    jolt = path[1].clone()
    jolt[0, 0] += 0.01
    # second difference -0.02 on each coordinate of one hand: 3 * 0.02^2 per joint, averaged over two hands
    torch.testing.assert_close(acceleration_loss(path[0], jolt, path[2], valid), torch.tensor(3 * 0.02**2 / 2))
    assert float(acceleration_loss(path[0], jolt, path[2], torch.tensor([[False, True]]))) < 1e-12


def test_opacity_loss_averages_the_present_hands_only():
    opacities = torch.rand(3, 2 * 5, generator=torch.Generator().manual_seed(0))
    valid = torch.tensor([[True, False], [True, True], [False, False]])
    present = opacities.reshape(3, 2, 5)[valid]  # boolean indexing: the reference
    torch.testing.assert_close(opacity_loss(opacities, valid), 1.0 - present.mean())
    assert float(opacity_loss(opacities, torch.zeros(3, 2, dtype=torch.bool))) == 1.0


def test_ssim_matches_pytorch_msssim():
    from pytorch_msssim import ssim as reference

    from hand4dgs_ns.model.losses import ssim

    g = torch.Generator().manual_seed(0)
    for shape in ((2, 40, 56, 3), (1, 24, 9, 3)):  # the second is narrower than the window
        x = torch.rand(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        y = (x.detach() + 0.1 * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        xr = x.detach().clone().requires_grad_(True)
        got = ssim(x, y)
        want = reference(xr.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2), data_range=1.0, size_average=True)
        torch.testing.assert_close(got, want)
        got.backward()
        want.backward()
        torch.testing.assert_close(x.grad, xr.grad)
