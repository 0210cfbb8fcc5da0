"""``--pipeline.model.estimate-input``: each frame's per-frame hand estimate as one more token per hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_network import TINY_SIZES, tiny_inputs

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.estimates import ESTIMATE_DIM, EXTENT_M, MIRROR_SIGNS, encode_estimates
from hand4dgs_ns.geometry.mirror import mirror_boxes, mirror_points
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

SPEC = InputSpec("tokens", (4, 8))
K = torch.tensor([[[100.0, 0, 40], [0, 110.0, 30], [0, 0, 1]]])


def _hands(seed: int = 0) -> torch.Tensor:
    """Both hands' joints of one frame, camera frame, about 0.4-0.5 m in front of the camera."""
    g = torch.Generator().manual_seed(seed)
    wrists = torch.tensor([[-0.08, 0.05, 0.45], [0.07, 0.06, 0.5]])
    return wrists[None, :, None] + 0.04 * torch.randn(1, 2, 21, 3, generator=g) * torch.tensor([1.0, 1, 0.3])


def test_an_estimate_at_the_box_prior_encodes_to_zero_offsets():
    joints = _hands()
    wrist = joints[0, :, 0]
    # Boxes centred on each wrist's projection, sized so the prior puts a hand there: size = f * extent / depth.
    uv = wrist[:, :2] / wrist[:, 2:] * torch.tensor([100.0, 110.0]) + torch.tensor([40.0, 30.0])
    half = 0.5 * 105.0 * EXTENT_M / wrist[:, 2:]
    bbox = torch.cat([uv - half, uv + half], dim=-1)[None]
    usable = torch.tensor([[True, False]])
    code = encode_estimates(joints, usable, torch.eye(4)[None], K, bbox)
    assert code.shape == (1, 2, ESTIMATE_DIM)
    torch.testing.assert_close(code[0, 0, :3], torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(code[0, 0, 3:63].reshape(20, 3), (joints[0, 0, 1:] - wrist[0]) / EXTENT_M)
    assert code[0, 0, 63] == 1
    assert torch.all(code[0, 1] == 0)  # not usable: nothing of it reaches the network


def test_the_mirrored_estimate_is_the_estimate_read_in_the_mirror():
    joints = _hands(1)
    c2w = torch.eye(4)[None].clone()
    c2w[0, :3, 3] = torch.tensor([0.3, -0.2, 1.0])  # world = camera moved: the encoding is in the camera frame
    bbox = torch.tensor([[[10.0, 20, 40, 55], [50, 18, 75, 44]]])
    code = encode_estimates(joints + c2w[0, :3, 3], torch.ones(1, 2, dtype=torch.bool), c2w, K, bbox)
    mirrored = encode_estimates(
        mirror_points(joints) + c2w[0, :3, 3], torch.ones(1, 2, dtype=torch.bool), c2w, K, mirror_boxes(bbox, K[:, 0, 2])
    )
    torch.testing.assert_close(mirrored, code * torch.tensor(MIRROR_SIGNS), atol=1e-5, rtol=1e-5)


def _network(**option: object) -> HandNetwork:
    torch.manual_seed(0)
    network = HandNetwork(HandNetworkConfig(estimate_input=True, **option, **TINY_SIZES), SPEC)
    with torch.no_grad():  # away from the zero-initialised heads, so every output depends on the input
        for p in network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return network.eval()


def test_the_network_reads_the_estimates_and_asks_for_them():
    network = _network()
    x = tiny_inputs(torch.randn(3, 2, 4, 8))
    with pytest.raises(Hand4DGSError, match="pseudo_joints"):
        network(x)
    estimates = torch.randn(3, 2, ESTIMATE_DIM)
    with torch.no_grad():
        a = network(dataclasses.replace(x, estimates=estimates), with_gaussians=False)
        b = network(dataclasses.replace(x, estimates=estimates + 0.5), with_gaussians=False)
    assert (a.joints - b.joints).abs().amax() > 1e-4
    out = network(dataclasses.replace(x, estimates=estimates), with_gaussians=False)
    out.joints.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.estimate_embed.parameters())
    assert {id(p) for p in network.estimate_embed.parameters()} <= {id(p) for p in network.pose_parameters()}


def test_with_the_mirrored_pose_path_the_left_estimate_is_read_in_the_mirror():
    network = _network(mirrored_pose=True)
    assert network.estimate_embed[0] is network.estimate_embed[1]
    tokens = torch.randn(3, 1, 4, 8).expand(3, 2, 4, 8).contiguous()  # the left crop shows the right one mirrored
    x = tiny_inputs(tokens)
    right_box = x.bbox[:, 1]
    right = torch.randn(3, ESTIMATE_DIM)
    x = dataclasses.replace(
        x,
        bbox=torch.stack([mirror_boxes(right_box, x.K[:, 0, 2]), right_box], dim=1),
        estimates=torch.stack([right * torch.tensor(MIRROR_SIGNS), right], dim=1),
    )
    with torch.no_grad():
        out = network(x, with_gaussians=False)
    torch.testing.assert_close(out.joints[:, 0], mirror_points(out.joints[:, 1]), atol=1e-5, rtol=0)


def test_the_generalised_method_reads_the_estimates_and_smoothed_labels_by_default():
    """(The generalised run of tests/test_generalized.py trains, evaluates, infers and fine-tunes with them.)"""
    from hand4dgs_ns.method_configs import hand4dgs_generalized_trainer, hand4dgs_trainer

    config = hand4dgs_generalized_trainer(100)
    assert config.pipeline.model.estimate_input and config.pipeline.model.mirrored_pose
    assert config.pipeline.datamanager.pseudo_label_smoothing > 0
    assert config.pipeline.model.vertex_weight_floor > 0  # the image phase keeps a pull towards the labels
    assert config.pipeline.model.pixel_colors  # colours from the new video's own crops
    assert config.pipeline.model.normal_offset_mm == 3.0  # Gaussians may leave the mesh along its normal
    assert config.pipeline.model.silhouette_loss_weight == 30.0 and config.pipeline.datamanager.color_crop_scale == 3
    assert config.pipeline.model.box_fit and not hand4dgs_trainer(100).pipeline.model.box_fit  # hands centred on their boxes
    assert config.pipeline.model.matte and not hand4dgs_trainer(100).pipeline.model.matte  # opacities gated by the crop's matte
    # The image phase starts earlier than the paper's 77%, and the learning rates decay over the whole run.
    config = hand4dgs_generalized_trainer(14760)
    assert (config.pipeline.model.image_loss_from, config.pipeline.model.vertex_decay_steps) == (9240, 1380)
    assert all(o["scheduler"].max_steps == 14760 for o in config.optimizers.values())
    assert not hand4dgs_trainer(100).pipeline.model.estimate_input  # per video: the paper's frames-only network


def test_box_jitter_and_the_estimate_input_are_refused_together(tmp_path, monkeypatch):
    """The estimates are encoded against the clip's boxes; jittered boxes would contradict them."""
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=6)
    config.pipeline.model.estimate_input = config.pipeline.model.box_jitter = True
    with pytest.raises(Hand4DGSError, match="box-jitter"):
        config.pipeline.setup(device="cpu", test_mode="val")
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # refused before any cache was built
