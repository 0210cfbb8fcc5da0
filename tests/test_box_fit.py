"""``--pipeline.model.box-fit``: each predicted hand centred on its box, depth and pose left as predicted."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from hand4dgs_ns.geometry.cameras import box_around, box_centre_offset, centre_on_box, invert_rigid, project_points, transform_points

from tiny_network import tiny_inputs, twin_networks

K = torch.tensor([[100.0, 0, 40], [0, 120.0, 30], [0, 0, 1]])
WH = torch.tensor([80.0, 60.0])


def _corners(x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    return torch.tensor([[x0, y0], [x1, y1], [x0, y1], [0.5 * (x0 + x1), 0.5 * (y0 + y1)]])


def test_offset_between_box_centres_in_pixels():
    box = torch.tensor([20.0, 10, 40, 30])
    assert box_centre_offset(box_around(_corners(20, 10, 40, 30)), box, WH).abs().max() == 0
    torch.testing.assert_close(box_centre_offset(box_around(_corners(25, 4, 45, 24)), box, WH), torch.tensor([5.0, -6.0]))  # right, up
    assert box_centre_offset(box_around(_corners(10, 5, 50, 35)), box, WH).abs().max() == 0  # larger, same centre


def test_offset_compares_the_parts_inside_the_image():
    # A hand leaving the frame at the bottom right: its box is clipped there, its projected points are not.
    clipped_box = torch.tensor([60.0, 40, 80, 60])
    assert box_centre_offset(box_around(_corners(60, 40, 95, 71)), clipped_box, WH).abs().max() == 0
    assert box_centre_offset(box_around(_corners(60, 40, 95, 71)), torch.tensor([60.0, 40, 95, 71]), WH).abs().max() == 0


def _clouds(centres: list[list[float]]) -> torch.Tensor:
    """Clouds 6 cm across and 3 cm deep (a hand's size) around camera-frame centres (metres)."""
    torch.manual_seed(0)
    return torch.randn(len(centres), 200, 3) * torch.tensor([0.01, 0.01, 0.005]) + torch.tensor(centres)[:, None]


def test_centring_puts_hand_sized_clouds_on_their_boxes_at_their_depth():
    points = _clouds([[0.05, 0.0, 0.3], [-0.1, 0.05, 0.4], [0.0, 0.0, 0.5], [0.02, -0.04, 0.35], [0.0, 0.1, 0.45]])
    boxes = torch.tensor([[10.0, 12, 34, 40], [40, 20, 70, 50], [30, 25, 50, 40], [5, 5, 45, 55], [0, 0, 0, 0]])
    k, wh = K.expand(5, 3, 3), WH.expand(5, 2)
    assert box_centre_offset(box_around(project_points(k, points)), boxes, wh)[:4].abs().max() > 10  # off their boxes before
    shift = centre_on_box(points, boxes, k, wh)
    assert box_centre_offset(box_around(project_points(k, points + shift[:, None])), boxes, wh)[:4].abs().max() < 0.3  # within 0.3 px
    assert shift[:, 2].abs().max() == 0  # across the view only: the depth stays
    assert shift[4].abs().max() == 0  # an empty box (no hand there) moves nothing


def test_a_hand_cut_by_the_image_border_is_centred_on_what_is_seen_of_it():
    # The true hand crosses the bottom-right corner; the predicted one sits 12 px left and 9 px up of it.
    truth = _clouds([[0.14, 0.1, 0.4]])
    predicted = truth - torch.tensor([12 / 100 * 0.4, 9 / 120 * 0.4, 0.0])  # pixels / focal * depth
    uv = project_points(K[None], truth)
    box = _clip_to_box(uv)
    assert (uv.amax(dim=1) > WH).all()  # the true hand leaves the frame on both axes
    before = box_centre_offset(box_around(project_points(K[None], predicted)), box, WH[None])
    assert before.abs().min() > 3

    def left_after(iterations: int) -> torch.Tensor:
        shift = centre_on_box(predicted, box, K[None], WH[None], iterations)
        return box_centre_offset(box_around(project_points(K[None], predicted + shift[:, None])), box, WH[None]).abs()

    # The border halves what a shift moves such a box, so each plain step closes half of what is left:
    # within 1.2 px after the default two, within 0.3 px after four.
    assert (left_after(2) < 0.3 * before.abs()).all() and left_after(2).max() < 1.2
    assert (left_after(4) < 0.6 * left_after(3)).all() and left_after(4).max() < 0.3
    # Where the border cut the box, the hand goes where the frame's is (within a pixel, at four steps).
    shift = centre_on_box(predicted, box, K[None], WH[None], iterations=4)
    torch.testing.assert_close(predicted + shift[:, None], truth, atol=0.4 / 100, rtol=0)


def _clip_to_box(uv: torch.Tensor) -> torch.Tensor:
    """The xyxy box around projected points, clipped to the image as a hand box is."""
    box = box_around(uv)
    return torch.cat([box[:, :2].clamp(min=0), torch.minimum(box[:, 2:], WH)], dim=-1)


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

    def gaps(out) -> torch.Tensor:  # pixels
        cam = transform_points(invert_rigid(x.c2w)[:, None], out.vertices)
        return box_centre_offset(box_around(project_points(x.K[:, None], cam)), x.bbox, x.image_hw.flip(-1).float()[:, None])

    out, expected = network(x), plain(x)
    assert gaps(expected).abs().max() > 2  # the untrained hands are off their boxes
    assert gaps(out).abs().max() < 0.5  # both hands centred
    # The template translation moved with the mesh (c2w is the identity here), across the view only.
    shift = out.joints[:, :, 0] - expected.joints[:, :, 0]
    torch.testing.assert_close(out.translation - expected.translation, shift)
    torch.testing.assert_close(out.vertices - expected.vertices, shift[:, :, None].expand_as(out.vertices))
    assert shift[..., 2].abs().max() == 0 and shift[..., :2].abs().max() > 1e-3
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


def test_box_jitter_is_refused_with_the_fit():
    from hand4dgs_ns.errors import Hand4DGSError
    from hand4dgs_ns.model.hand4dgs import Hand4DGSModelConfig

    with pytest.raises(Hand4DGSError, match="box-jitter moves the hand boxes that --pipeline.model.box-fit centres"):
        Hand4DGSModelConfig(box_fit=True, box_jitter=True).check()
    Hand4DGSModelConfig(box_fit=True).check()
