"""``--pipeline.model.pixel-feedback``: the pose corrected from the feature map under the projected joints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hand4dgs_ns.features.crops import sample_crop
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

from test_pixel_colors import _crop_network
from tiny_network import crop_inputs


@pytest.mark.parametrize("mirrored_pose", [False, True])
def test_untrained_feedback_keeps_the_first_prediction_and_reads_the_map_under_each_joint(mirrored_pose):
    plain = _crop_network(mirrored_pose=mirrored_pose)
    network = _crop_network(mirrored_pose=mirrored_pose, pixel_feedback=True)
    missing, _ = network.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.split(".")[2] in ("point_reduce", "point_tc", "refine_head") for k in missing)  # nothing else is new
    x = crop_inputs()
    read = {}
    for slot, branch in enumerate(network.branches):
        branch.refine_head.register_forward_hook(lambda m, args, out, slot=slot: read.update({slot: args[0]}) if slot not in read else None)
        if mirrored_pose:  # one shared head: the hooks fire in slot order, once per hand
            break
    with torch.no_grad():
        expected, out = plain(x), network(x)
    # The zero-initialised head corrects nothing: the same hands as without the option.
    torch.testing.assert_close(out.vertices, expected.vertices, atol=0, rtol=0)
    torch.testing.assert_close(out.colors, expected.colors, atol=0, rtol=0)
    # What the head read for each hand: the map of that hand's crop (the left one's mirrored) at its joints.
    _, maps = network.tokens(x.frames[:, 1])
    maps_left = network.tokens(x.frames[:, 0])[1]
    with torch.no_grad():
        for slot, fmap in ((1, maps), (0, maps_left)):
            if slot not in read:
                continue
            branch = network.branches[slot]
            joints_cam = transform_points(invert_rigid(x.c2w), out.joints[:, slot])
            points = sample_crop(branch.point_reduce(fmap), project_points(x.K, joints_cam), x.bbox[:, slot], flip=slot == 0)
            assert points.abs().sum() > 0  # the joints land on the crop, so the check has teeth
            points = branch.point_tc(points[:, None])  # a window of one frame
            feat_dim = branch.tc.conv.out_channels * network.token_shape[0]
            torch.testing.assert_close(read[slot][:, feat_dim : feat_dim + points[0].numel()], points.flatten(1), atol=1e-5, rtol=1e-5)


def test_trained_feedback_moves_the_hands_and_trains_with_the_pose_path():
    network = _crop_network(mirrored_pose=True, pixel_feedback=True)
    x = crop_inputs()
    before = network(x, with_gaussians=False).joints.detach()
    torch.manual_seed(3)
    nn.init.normal_(network.branches[1].refine_head[-1].weight, std=0.01)  # as after some training
    after = network(x, with_gaussians=False)
    assert (after.joints - before).abs().max() > 1e-3  # both hands corrected, through the one shared head
    assert (after.joints[:, 0] - before[:, 0]).abs().max() > 1e-3
    after.joints.sum().backward()
    right = network.branches[1]
    feedback = [p for m in (right.point_reduce, right.point_tc, right.refine_head) for p in m.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in feedback)
    pose = {id(p) for p in network.pose_parameters()}
    assert all(id(p) in pose for p in feedback)  # placing parameters: test-time optimisation with --no-free-pose leaves them be
    assert not pose & {id(p) for p in network.appearance_parameters()}
    assert network.branches[0].refine_head is network.branches[1].refine_head  # one pose path, read in the mirror


def test_feedback_reads_each_window_frame_where_the_centre_frame_s_joints_sit_in_its_crop():
    network = _crop_network(pixel_feedback=True, window=3)
    x = crop_inputs(b=3)
    one = slice(0, 1)  # one predicted frame, its window the three input frames
    x = dataclasses.replace(
        x, window=torch.tensor([[0, 1, 2]]), bbox=x.bbox[one], valid=x.valid[one], K=x.K[one], c2w=x.c2w[one], image_hw=x.image_hw[one]
    )
    branch = network.branches[1]
    read = {}
    branch.point_tc.register_forward_hook(lambda m, args, out: read.update(points=args[0]))
    with torch.no_grad():
        out = network(x, with_gaussians=False)  # untrained head: its joints are the first prediction's
        assert read["points"].shape == (1, 3, 21, 8)
        joints = project_points(x.K, transform_points(invert_rigid(x.c2w), out.joints[:, 1]))
        maps = branch.point_reduce(network.tokens(x.frames[:, 1])[1])
        for t in range(3):  # each window frame's map, at the centre frame's joints in the crop of the centre box
            expected = sample_crop(maps[t : t + 1], joints, x.bbox[:, 1], flip=False)
            torch.testing.assert_close(read["points"][:, t], expected, atol=1e-5, rtol=1e-5)
        assert (read["points"][:, 0] - read["points"][:, 2]).abs().max() > 0  # distinct frames, distinct readings


def test_feedback_is_off_for_cached_tokens():
    sizes = dict(window=1, gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)
    network = HandNetwork(HandNetworkConfig(pixel_feedback=True, **sizes), InputSpec("tokens", (4, 8)))
    assert not network.config.pixel_feedback  # no crops, no feature map: the first prediction stands
    assert all(branch.refine_head is None for branch in network.branches)
