"""``--pipeline.model.matte``: each Gaussian's opacity scaled by a matte read from the frame's hand crop."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.crops import crop_hands, crop_params, normalized_frame_boxes, sample_crop
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.gaussians import gaussian_means
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec, NetworkInputs
from hand4dgs_ns.network.matte import START_LOGIT, HandMatte, matte_loss, matte_targets
from tiny_network import crop_inputs

_SIZES = dict(window=1, gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)


def _network(**option: object) -> HandNetwork:
    torch.manual_seed(0)
    return HandNetwork(HandNetworkConfig(**{**_SIZES, **option}), InputSpec("crops", (3, 64, 48)))


def _inputs(b: int = 2) -> NetworkInputs:
    g = torch.Generator().manual_seed(2)
    return dataclasses.replace(crop_inputs(b), color_crops=torch.randint(0, 256, (b, 2, 3, 128, 96), dtype=torch.uint8, generator=g))


def test_targets_are_the_masks_cut_as_the_crops_and_read_back_where_the_gaussians_land():
    labels = torch.zeros(1, 60, 80, dtype=torch.uint8)
    labels[0, 14:26, 12:18] = 1  # the left hand, in its box's left half only: a wrong mirror shows
    labels[0, 20:34, 50:62] = 2  # the right hand
    labels[0, 20:24, 62:66] = 3  # an occluder beside it: foreground too
    bbox = torch.tensor([[[12.0, 12, 24, 28], [48, 18, 64, 36]]])
    targets = matte_targets(labels, bbox, (64, 48))
    assert targets.shape == (1, 2, 64, 48)
    inside = {0: [[13.5, 20.5], [16.2, 15.3]], 1: [[55.5, 27.5], [63.5, 21.5]]}  # the last: the occluder
    outside = {0: [[20.0, 20.5], [22.5, 15.5]], 1: [[49.5, 35.0], [66.5, 30.5]]}
    for slot, flip in ((0, True), (1, False)):  # read back as a Gaussian's matte is: the left crop mirrored
        got_in = sample_crop(targets[:, slot, None], torch.tensor([inside[slot]]), bbox[:, slot], flip)[..., 0]
        got_out = sample_crop(targets[:, slot, None], torch.tensor([outside[slot]]), bbox[:, slot], flip)[..., 0]
        assert torch.all(got_in > 0.99) and torch.all(got_out < 0.01), (slot, got_in, got_out)
    # The same cut as a colour crop of the mask's picture.
    centre, size = crop_params(bbox[0])
    picture = (labels[0] >= 1).float()[None, ..., None].expand(2, 60, 80, 3)
    crops = crop_hands(picture, centre, size, torch.tensor([True, False]), (64, 48), normalize=False)
    torch.testing.assert_close(targets[0], crops[:, 0])
    # Masks at half the frame's size (--pipeline.datamanager.image-scale 0.5) with the boxes scaled
    # alike (the batch's bbox_image) give the same targets, up to the coarser outline.
    half = matte_targets(labels[:, ::2, ::2], bbox * 0.5, (64, 48))
    assert ((half > 0.5) == (targets > 0.5)).float().mean() > 0.95


def test_an_untrained_matte_scales_every_opacity_alike_and_leaves_the_colours():
    x = _inputs()
    plain, gated = _network(pixel_colors=True), _network(pixel_colors=True, matte=True)
    gated.load_state_dict(plain.state_dict(), strict=False)
    a, b = plain(x), gated(x)
    torch.testing.assert_close(b.colors, a.colors)
    torch.testing.assert_close(b.opacities, a.opacities * torch.sigmoid(torch.tensor(START_LOGIT)))
    assert b.matte_logits.shape == (2, 2, 128, 96) and a.matte_logits is None
    assert b.without_gaussians().matte_logits is None


def test_gaussians_where_the_matte_says_room_are_transparent():
    """A matte that says "hand" on the crop's left half and "room" on its right: each hand keeps the
    Gaussians on one side of its box centre, the left hand (mirrored crop) the image's right side."""
    x = _inputs()
    plain, gated = _network(pixel_colors=True), _network(pixel_colors=True, matte=True)
    gated.load_state_dict(plain.state_dict(), strict=False)
    mattes = torch.full((2, 2, 128, 96), 30.0)
    mattes[..., 48:] = -30.0
    crops = x.color_crops.float() / 255
    tokens = gated.hands_tokens(x)[0]
    out = plain(x)
    drawn = gated.decode(
        tokens[:, 0, None], tokens[:, 1, None], normalized_frame_boxes(x.bbox, x.image_hw), x.bbox, x.valid, x.K, x.c2w, True,
        crops, None, x.image_hw.flip(-1).float(), None, mattes,
    )
    for slot, branch in enumerate(gated.branches):
        g = branch.num_gaussians
        camera = transform_points(invert_rigid(x.c2w), out.vertices[:, slot])
        points = project_points(x.K, gaussian_means(camera, branch.hand.faces, branch.layout))
        centre, size = crop_params(x.bbox[:, slot])
        right = points[..., 0] > centre[:, None, 0] + 0.05 * size[:, None]  # clear of the halfway line
        left = points[..., 0] < centre[:, None, 0] - 0.05 * size[:, None]
        kept, dropped = (right, left) if slot == 0 else (left, right)
        opacity, ungated = drawn.opacities[:, slot * g : (slot + 1) * g], out.opacities[:, slot * g : (slot + 1) * g]
        assert kept.sum() > 20 and dropped.sum() > 20  # both sides hold Gaussians: the check has teeth
        assert torch.all(opacity[dropped] < 1e-6)
        torch.testing.assert_close(opacity[kept], ungated[kept], atol=1e-6, rtol=1e-6)


def test_the_matte_learns_a_hand_from_its_targets():
    """A few steps of its loss teach the matte a bright hand on a dark room (and the loss sees only hands present)."""
    torch.manual_seed(0)
    matte = HandMatte()
    crops = torch.rand(4, 3, 48, 36) * 0.3
    targets = torch.zeros(4, 48, 36)
    for i, (y, x) in enumerate([(8, 6), (20, 12), (14, 20), (30, 4)]):
        crops[i, :, y : y + 14, x : x + 10] += 0.6
        targets[i, y : y + 14, x : x + 10] = 1.0
    valid = torch.ones(2, 2, dtype=torch.bool)
    optimiser = torch.optim.Adam(matte.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = matte_loss(matte(crops).reshape(2, 2, 48, 36), targets.reshape(2, 2, 48, 36), valid)
        first = float(loss) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = matte(crops) > 0
    assert float(loss) < 0.1 * first
    assert (predicted == targets.bool()).float().mean() > 0.97
    # A missing hand's crop counts for nothing: here only the present hand's matte is right.
    logits = torch.full((1, 2, 4, 4), 9.0)
    targets = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])[None]
    assert float(matte_loss(logits, targets, torch.tensor([[True, False]]))) < 2e-4  # log(1 + e^-9)
    assert float(matte_loss(logits, targets, torch.tensor([[True, True]]))) > 4.0


def test_the_graphed_step_returns_the_matte_and_its_weights_train():
    from hand4dgs_ns.network.graphed import NetworkStep, _fields, _tensors

    network = _network(pixel_colors=True, matte=True)
    x = _inputs()
    step = NetworkStep(network, with_gaussians=True, compile=False, fields=_fields(x))
    outputs = step(*_tensors(x))
    torch.testing.assert_close(outputs[step.outputs.index("matte_logits")], network(x).matte_logits)
    ids = {id(p) for p in step.parameters()}
    assert all(id(p) in ids for p in network.matte.parameters())
    # The pose-only steps of the vertex phase train the matte too.
    pose_only = NetworkStep(network, with_gaussians=False, compile=False, fields=_fields(x))
    assert "matte_logits" in pose_only.outputs and "colors" not in pose_only.outputs
    ids = {id(p) for p in pose_only.parameters()}
    assert all(id(p) in ids for p in network.matte.parameters())
    assert pose_only(*_tensors(x))[pose_only.outputs.index("matte_logits")].shape == (2, 2, 128, 96)  # read from the colour crops
    network.eval()  # outside training a pose-only pass reads no crops for it
    assert network(x, with_gaussians=False).matte_logits is None


def test_a_training_step_with_the_matte_gives_its_loss(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=6)
    config.pipeline.model.pixel_colors = True
    config.pipeline.model.matte = True
    config.pipeline.datamanager.color_crop_scale = 2
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    assert pipe.model.network.matte is not None
    pipe.train()
    for step in (0, config.pipeline.model.image_loss_from):  # the vertex phase and the image phase
        pipe.model.step = step
        pipe.model.zero_grad()
        outputs, losses, _ = pipe.get_train_loss_dict(step)
        assert outputs["matte_logits"].shape[-2:] == (128, 96)  # the colour crops, in both phases
        assert "matte_loss" in losses and all(torch.isfinite(v) for v in losses.values())
        assert ("image_loss" in losses) == (step > 0)
        losses["matte_loss"].backward()
        assert pipe.model.network.matte.out.weight.grad.abs().sum() > 0
    # Without pixel colours there is nothing to gate; with box jitter its crops would leave its targets.
    with pytest.raises(Hand4DGSError, match="pixel-colors True"):
        _network(matte=True)
    config.pipeline.model.box_jitter = True
    with pytest.raises(Hand4DGSError, match="the matte's crops"):
        config.pipeline.model.check()
