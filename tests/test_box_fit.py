"""``--pipeline.model.box-fit``: each predicted hand centred on its box, depth and pose left as predicted."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from hand4dgs_ns.geometry.cameras import box_discrepancy, centre_on_box, invert_rigid, project_points, transform_points

from tiny_network import tiny_inputs, twin_networks

K = torch.tensor([[100.0, 0, 40], [0, 120.0, 30], [0, 0, 1]])
WH = torch.tensor([80.0, 60.0])


def _corners(x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    return torch.tensor([[x0, y0], [x1, y1], [x0, y1], [0.5 * (x0 + x1), 0.5 * (y0 + y1)]])


def test_discrepancy_reads_offset_as_a_ray_and_size_as_a_log_ratio():
    box = torch.tensor([20.0, 10, 40, 30])
    assert box_discrepancy(_corners(20, 10, 40, 30), box, K, WH).abs().max() == 0
    shifted = box_discrepancy(_corners(25, 4, 45, 24), box, K, WH)  # 5 px right, 6 px up
    torch.testing.assert_close(shifted, torch.tensor([5 / 100, -6 / 120, 0.0, 0.0]))
    larger = box_discrepancy(_corners(10, 5, 50, 35), box, K, WH)  # twice as wide, 1.5 times as tall, same centre
    torch.testing.assert_close(larger, torch.tensor([0.0, 0.0, math.log(2.0), math.log(1.5)]))


def test_discrepancy_compares_the_parts_inside_the_image():
    # A hand leaving the frame at the bottom right: its box is clipped there, its projected points are not.
    clipped_box = torch.tensor([60.0, 40, 80, 60])
    assert box_discrepancy(_corners(60, 40, 95, 71), clipped_box, K, WH).abs().max() == 0
    assert box_discrepancy(_corners(60, 40, 95, 71), torch.tensor([60.0, 40, 95, 71]), K, WH).abs().max() == 0


def test_centring_puts_hand_sized_clouds_on_their_boxes_at_their_depth():
    torch.manual_seed(0)
    # Clouds 6 cm across and 3 cm deep at 30-50 cm, and boxes of about their drawn size elsewhere in the frame.
    points = torch.randn(5, 200, 3) * torch.tensor([0.01, 0.01, 0.005]) + torch.tensor([[0.05, 0.0, 0.3], [-0.1, 0.05, 0.4],
        [0.0, 0.0, 0.5], [0.02, -0.04, 0.35], [0.0, 0.1, 0.45]])[:, None]
    boxes = torch.tensor([[10.0, 12, 34, 40], [40, 20, 70, 50], [30, 25, 50, 40], [5, 5, 45, 55], [0, 0, 0, 0]])
    k, wh = K.expand(5, 3, 3), WH.expand(5, 2)
    assert box_discrepancy(project_points(k, points), boxes, k, wh)[:4, :2].abs().max() > 0.1  # off their boxes before
    shift = centre_on_box(points, boxes, k, wh, iterations=3)
    gap = box_discrepancy(project_points(k, points + shift[:, None]), boxes, k, wh)
    assert gap[:4, 0].abs().max() * 100 < 0.3 and gap[:4, 1].abs().max() * 120 < 0.3  # centred within 0.3 px
    assert shift[:, 2].abs().max() == 0  # across the view only: the depth stays
    assert shift[4].abs().max() == 0  # an empty box (no hand there) moves nothing


@pytest.mark.parametrize("mirrored_pose", [False, True])
def test_centred_hands_sit_on_their_boxes_and_keep_their_pose(mirrored_pose):
    _, network = twin_networks(box_fit=True, mirrored_pose=mirrored_pose)
    plain = copy.deepcopy(network)
    plain.config = dataclasses.replace(network.config, box_fit=False)
    for branch in plain.branches:  # the same network, hands where the heads put them
        branch.sizes = plain.config
    assert network.state_dict().keys() == plain.state_dict().keys()  # no parameter of its own
    torch.manual_seed(1)
    x = tiny_inputs(torch.randn(3, 2, 4, 8))

    def gaps(out) -> torch.Tensor:
        cam = transform_points(invert_rigid(x.c2w)[:, None], out.vertices)
        return box_discrepancy(project_points(x.K[:, None], cam), x.bbox, x.K[:, None], x.image_hw.flip(-1).float()[:, None])

    out, expected = network(x), plain(x)
    assert gaps(expected)[..., :2].abs().max() > 0.02  # the untrained hands are off their boxes
    assert gaps(out)[..., :2].abs().max() < 0.01  # both hands centred (under a pixel at f = 100)
    # The hands only moved across the view: the same pose and shape, the same depth of the wrist.
    torch.testing.assert_close(out.hand_pose, expected.hand_pose, atol=0, rtol=0)
    torch.testing.assert_close(out.betas, expected.betas, atol=0, rtol=0)
    torch.testing.assert_close(out.joints[..., 0, 2], expected.joints[..., 0, 2])  # c2w is the identity here
    # A loss on a centred hand cannot move it across the view: the translation head's lateral
    # outputs learn (almost) nothing from it, its depth and the pose still do.
    out.joints.sum().backward()
    expected.joints.sum().backward()
    transl, transl_plain = network.branches[1].transl_head[-1].bias.grad, plain.branches[1].transl_head[-1].bias.grad
    assert transl[:2].abs().max() < 0.1 * transl_plain[:2].abs().max()
    assert transl[2].abs() > 0.1 * transl_plain[2].abs()
    assert network.branches[1].pose_head[-1].weight.grad.abs().sum() > 0


def test_a_hand_without_a_box_stays_where_the_heads_put_it():
    _, network = twin_networks(box_fit=True)
    torch.manual_seed(1)
    x = tiny_inputs(torch.randn(2, 2, 4, 8))
    bbox = x.bbox.clone()
    bbox[1, 0] = 0.0  # the left hand of the second frame is out of view: an all-zero box
    x = dataclasses.replace(x, bbox=bbox, valid=bbox[..., 2] > 0)
    with torch.no_grad():
        out = network(x)
        network.config = dataclasses.replace(network.config, box_fit=False)
        for branch in network.branches:
            branch.sizes = network.config
        heads_only = network(x)
    torch.testing.assert_close(out.vertices[1, 0], heads_only.vertices[1, 0], atol=0, rtol=0)
    assert (out.vertices[1, 1] - heads_only.vertices[1, 1]).abs().max() > 1e-3  # the other hand is centred
