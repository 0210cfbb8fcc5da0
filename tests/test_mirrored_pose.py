"""``--pipeline.model.mirrored-pose``: one pose path for both hands, the left one read in the mirror."""

from __future__ import annotations

import dataclasses

import torch
from tiny_network import TINY_SIZES, tiny_inputs

from hand4dgs_ns.geometry.mirror import mirror_boxes, mirror_points, mirror_rotations
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

SPEC = InputSpec("tokens", (4, 8))


def _network(seed: int = 0) -> HandNetwork:
    torch.manual_seed(seed)
    network = HandNetwork(HandNetworkConfig(mirrored_pose=True, **TINY_SIZES), SPEC)
    with torch.no_grad():  # away from the zero-initialised heads, so every output depends on the input
        for p in network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return network


def test_mirror_boxes_follow_the_projection():
    K = torch.tensor([[100.0, 0, 43], [0, 100.0, 30], [0, 0, 1]])
    points = torch.tensor([[0.05, -0.02, 0.5], [0.11, 0.03, 0.6]])

    def box(p: torch.Tensor) -> torch.Tensor:
        uv = (p @ K.T)[:, :2] / p[:, 2:]
        return torch.cat([uv.amin(0), uv.amax(0)])

    torch.testing.assert_close(mirror_boxes(box(points), K[0, 2]), box(mirror_points(points)))


def test_the_left_hand_is_the_mirrored_right_hand_for_mirrored_inputs():
    network = _network().eval()
    tokens = torch.randn(3, 1, 4, 8).expand(3, 2, 4, 8).contiguous()  # the left crop shows the right one mirrored
    x = tiny_inputs(tokens)
    right_box = x.bbox[:, 1]
    x = dataclasses.replace(x, bbox=torch.stack([mirror_boxes(right_box, x.K[:, 0, 2]), right_box], dim=1))
    assert float(x.K[0, 0, 2]) * 2 == float(x.image_hw[0, 1])  # principal point at the image centre
    with torch.no_grad():
        out = network(x)
    assert out.joints[:, 1].std() > 0.01
    torch.testing.assert_close(out.joints[:, 0], mirror_points(out.joints[:, 1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.vertices[:, 0], mirror_points(out.vertices[:, 1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.global_orient[:, 0], mirror_rotations(out.global_orient[:, 1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.hand_pose[:, 0], mirror_rotations(out.hand_pose[:, 1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.betas[:, 0], out.betas[:, 1])


def test_both_hands_train_one_set_of_pose_weights():
    network = _network()
    torch.manual_seed(1)
    plain = HandNetwork(HandNetworkConfig(**TINY_SIZES), SPEC)
    branch_pose = sum(p.numel() for m in plain.branches[0].pose_modules() for p in m.parameters())
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in plain.parameters()) - branch_pose
    pose = network.pose_parameters()
    assert len({id(p) for p in pose}) == len(pose)

    out = network(tiny_inputs(torch.randn(2, 2, 4, 8)), with_gaussians=False)
    out.joints[:, 0].sum().backward()  # the left hand only
    assert network.branches[1].pose_head[-1].weight.grad.abs().sum() > 0

    # The checkpoint restores the shared weights (saved under both branches' names).
    restored = HandNetwork(HandNetworkConfig(mirrored_pose=True, **TINY_SIZES), SPEC)
    restored.load_state_dict(network.state_dict())
    x = tiny_inputs(torch.randn(2, 2, 4, 8))
    with torch.no_grad():
        torch.testing.assert_close(restored(x).joints, network(x).joints)
