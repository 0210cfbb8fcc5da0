"""``--pipeline.model.context-gradient False``: a window's neighbour crops encoded without gradient."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_network import TINY_SIZES, tiny_inputs

from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

SPEC = InputSpec("crops", (3, 64, 48))


WINDOWS = {
    "neighbours": [[0, 1, 2], [1, 2, 3], [2, 3, 4]],  # three predicted frames (1, 2, 3) of five read
    "clamped": [[0, 0, 1], [0, 1, 2], [1, 2, 2]],  # a clip's only three frames: every frame read is predicted
}


def _inputs(window):
    torch.manual_seed(0)
    rows = torch.tensor(window)
    crops = torch.randint(0, 256, (int(rows.max()) + 1, 2, 3, 64, 48), dtype=torch.uint8)
    return dataclasses.replace(tiny_inputs(crops[:3]), frames=crops, window=rows)


def _grads(context_gradient: bool, pixel_feedback: bool, window=WINDOWS["neighbours"], device: str = "cpu"):
    torch.manual_seed(0)
    sizes = dict(TINY_SIZES, window=3)
    network = HandNetwork(HandNetworkConfig(context_gradient=context_gradient, pixel_feedback=pixel_feedback, **sizes), SPEC)
    with torch.no_grad():  # away from the zero-initialised heads, so every output depends on the input
        for p in network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = _inputs(window)
    x = dataclasses.replace(x, **{f.name: getattr(x, f.name).to(device) for f in dataclasses.fields(x) if getattr(x, f.name) is not None})
    out = network.to(device)(x, with_gaussians=False)
    out.joints.square().sum().backward()
    backbone = {id(p) for p in network.backbone.parameters()}
    return (
        out.joints.detach().cpu(),
        torch.cat([p.grad.flatten() for p in network.backbone.parameters()]).cpu(),
        torch.cat([p.grad.flatten() for p in network.parameters() if id(p) not in backbone and p.grad is not None]).cpu(),
    )


@pytest.mark.parametrize("pixel_feedback", [False, True])
def test_only_the_backbones_gradient_changes(pixel_feedback):
    joints, backbone, rest = _grads(True, pixel_feedback)
    joints_split, backbone_split, rest_split = _grads(False, pixel_feedback)
    # The same values (GroupNorm normalises each crop alone) and so the same gradient after the backbone.
    torch.testing.assert_close(joints_split, joints)
    torch.testing.assert_close(rest_split, rest)
    # The backbone trains on the centre crops only: a different, still non-zero gradient.
    assert backbone_split.abs().sum() > 0
    assert (backbone_split - backbone).abs().sum() > 1e-3 * backbone.abs().sum()


def test_windows_of_predicted_frames_only_keep_the_whole_gradient():
    joints, backbone, rest = _grads(True, False, WINDOWS["clamped"])
    joints_split, backbone_split, rest_split = _grads(False, False, WINDOWS["clamped"])
    torch.testing.assert_close(joints_split, joints)
    torch.testing.assert_close(backbone_split, backbone)
    torch.testing.assert_close(rest_split, rest)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("pixel_feedback", [False, True])
def test_the_split_on_cuda_keeps_the_values_and_the_heads_gradient(pixel_feedback, monkeypatch):
    """The CPU test above on a GPU, each path against the other on the same device (CPU and GPU
    sample and reduce in other orders, so their gradients are compared to each other nowhere). The
    split batches may pick other convolution algorithms: full float32 (cuDNN's TF32 off), so those
    differ by rounding only."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    joints, backbone, rest = _grads(True, pixel_feedback, device="cuda")
    joints_split, backbone_split, rest_split = _grads(False, pixel_feedback, device="cuda")
    torch.testing.assert_close(joints_split, joints, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rest_split, rest, atol=1e-4, rtol=1e-3)
    assert backbone_split.abs().sum() > 0
    assert (backbone_split - backbone).abs().sum() > 1e-3 * backbone.abs().sum()


def test_both_hands_of_exactly_the_predicted_frames_are_encoded_with_gradient():
    torch.manual_seed(0)
    network = HandNetwork(HandNetworkConfig(context_gradient=False, **dict(TINY_SIZES, window=3)), SPEC)
    x = _inputs(WINDOWS["neighbours"])
    with_gradient = []
    original = network.tokens
    network.tokens = lambda frames: (with_gradient.append(frames) if torch.is_grad_enabled() else None, original(frames))[1]
    network(x, with_gaussians=False)
    # Frames 1, 2, 3 are predicted: their left and right crops, in that order, and nothing else.
    assert len(with_gradient) == 1
    torch.testing.assert_close(with_gradient[0], x.frames[1:4].flatten(0, 1), atol=0, rtol=0)
