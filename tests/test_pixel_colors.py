"""``--pipeline.model.pixel-colors``: Gaussian colours that start from the frame's hand crops."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.crops import crop_hands, crop_params, sample_crop
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.gaussians import gaussian_means
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec
from tiny_network import crop_inputs


def _ramp_image(h: int = 60, w: int = 80) -> torch.Tensor:
    """A smooth colour image (1, H, W, 3): red grows along x, green along y, blue constant."""
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([x / w, y / h, torch.full_like(x, 0.3)], dim=-1)[None]


@pytest.mark.parametrize("flip", [False, True])
def test_sampling_a_crop_gives_the_image_colour_under_the_point(flip):
    image = _ramp_image()
    bbox = torch.tensor([[30.0, 20, 46, 36]])
    centre, size = crop_params(bbox)
    crop = crop_hands(image, centre, size, torch.tensor([flip]), out_hw=(64, 48), normalize=False)
    points = torch.tensor([[[38.0, 28.0], [33.2, 24.9], [44.1, 31.3]]])  # inside the crop
    rgb = sample_crop(crop, points, bbox[0:1], flip)
    expected = torch.stack([points[..., 0] / 80, points[..., 1] / 60, torch.full_like(points[..., 0], 0.3)], dim=-1)
    torch.testing.assert_close(rgb, expected, atol=2e-3, rtol=0)  # a ramp is bilinear: exact up to float error
    outside = sample_crop(crop, torch.tensor([[[0.5, 0.5]]]), bbox[0:1], flip)
    assert torch.all(outside == 0)  # beyond the crop: black, as the crop's own border
    empty = sample_crop(crop, points, torch.zeros(1, 4), flip)  # a hand without a box (all-zero box)
    assert torch.all(empty == 0)
    behind = sample_crop(crop, torch.tensor([[[1e12, -1e12]]]), bbox[0:1], flip)  # a point projected from behind the camera
    assert torch.all(behind == 0)


def _crop_network(**option: object) -> HandNetwork:
    sizes = dict(window=1, gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)
    torch.manual_seed(0)
    return HandNetwork(HandNetworkConfig(**{**sizes, **option}), InputSpec("crops", (3, 64, 48)))


@pytest.mark.parametrize("mirrored_pose,color_crops", [(False, False), (True, False), (False, True)])
def test_an_untrained_network_draws_each_gaussian_in_the_crop_colour_under_it(mirrored_pose, color_crops):
    network = _crop_network(pixel_colors=True, mirrored_pose=mirrored_pose)
    x = crop_inputs()
    if color_crops:  # larger crops of the same boxes: the colours come from them, not from the backbone's
        g = torch.Generator().manual_seed(2)
        x = dataclasses.replace(x, color_crops=torch.randint(0, 256, (2, 2, 3, 128, 96), dtype=torch.uint8, generator=g))
    out = network(x)
    for slot, branch in enumerate(network.branches):  # slot 0, the left hand, has mirrored crops
        g = branch.num_gaussians
        camera_vertices = transform_points(invert_rigid(x.c2w), out.vertices[:, slot])
        camera_means = gaussian_means(camera_vertices, branch.hand.faces, branch.layout)
        crops = (x.color_crops if color_crops else x.frames)[:, slot].float() / 255.0
        expected = sample_crop(crops, project_points(x.K, camera_means), x.bbox[:, slot], flip=slot == 0).clamp(0.02, 0.98)
        assert (expected > 0.02).float().mean() > 0.9  # the Gaussians land on the crop, so the check has teeth
        torch.testing.assert_close(out.colors[:, slot * g : (slot + 1) * g], expected, atol=1e-4, rtol=1e-4)


def test_the_graphed_step_passes_colour_crops_without_estimates():
    """CUDA graphs take the inputs as a flat tuple of tensors; the optional ones must come back under
    their own names (here colour crops given, estimates not)."""
    from hand4dgs_ns.network.graphed import NetworkStep, _fields, _tensors

    network = _crop_network(pixel_colors=True)
    x = dataclasses.replace(crop_inputs(), color_crops=torch.zeros(2, 2, 3, 128, 96, dtype=torch.uint8))
    step = NetworkStep(network, with_gaussians=True, compile=False, fields=_fields(x))
    colors = step(*_tensors(x))[step.outputs.index("colors")]
    torch.testing.assert_close(colors, network(x).colors)
    torch.testing.assert_close(colors, torch.full_like(colors, 0.02))  # black colour crops (clamped), not the random backbone crops


def test_the_colour_decoder_learns_corrections_and_the_samples_do_not_move_the_hand():
    network = _crop_network(pixel_colors=True)
    with torch.no_grad():  # a decoder that has learnt something, so colours depend on every input
        for branch in network.branches:
            branch.color_mlp[-1].weight.normal_(std=0.5)
    out = network(crop_inputs())
    out.colors.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for b in network.branches for p in b.color_mlp.parameters())
    # Where the hand is drawn is the image loss's lever on the pose; the colours read the crops at the
    # detached geometry, so the heads that place the hand get no gradient from them.
    heads = [p for b in network.branches for m in (b.shape_head, b.pose_head, b.transl_head) for p in m.parameters()]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in heads)


def test_pixel_colors_are_off_for_cached_tokens_and_refuse_crop_jitter():
    sizes = dict(gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)
    network = HandNetwork(HandNetworkConfig(pixel_colors=True, **sizes), InputSpec("tokens", (4, 8)))
    assert not network.config.pixel_colors  # no crops to sample: colours from the embeddings, as without the option
    assert network.branches[0].color_mlp[0].in_features == 8
    from hand4dgs_ns.model.hand4dgs import Hand4DGSModelConfig

    with pytest.raises(Hand4DGSError, match="crop-jitter"):
        Hand4DGSModelConfig(pixel_colors=True, crop_jitter=True).check()


def test_colour_crops_are_cached_larger_and_read_only_with_pixel_colors(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    from hand4dgs_ns.features.staging import PinnedStager
    from hand4dgs_ns.pipeline import settle_color_crops

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=6)
    config.pipeline.datamanager.color_crop_scale = 2
    pipe = config.pipeline.setup(device="cpu", test_mode="val")  # without pixel colours nothing reads them
    assert pipe.datamanager.frame_inputs.color_crops is None
    config.pipeline.model.pixel_colors = True
    config.pipeline.model.box_jitter = True
    config.pipeline.datamanager.color_crop_scale = 2
    with pytest.raises(Hand4DGSError, match="box-jitter"):
        config.pipeline.setup(device="cpu", test_mode="val")
    config.pipeline.model.box_jitter = False
    config.pipeline.datamanager.backbone = "hamer-vit-h"  # cached tokens: no crops to read colours from
    settle_color_crops(config.pipeline)
    assert config.pipeline.datamanager.color_crop_scale == 1
    config.pipeline.datamanager.color_crop_scale = 2
    config.pipeline.datamanager.backbone = "small-cnn"
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    inputs = pipe.datamanager.frame_inputs
    assert inputs.data[0].shape == (6, 2, 3, 64, 48) and inputs.color_crops[0].shape == (6, 2, 3, 128, 96)
    x = inputs.network_inputs(torch.zeros(2, dtype=torch.long), torch.tensor([1, 4]), 2, PinnedStager("cpu"))
    torch.testing.assert_close(x.color_crops, torch.from_numpy(inputs.color_crops[0][[1, 4]]))
    pose_only = inputs.network_inputs(torch.zeros(2, dtype=torch.long), torch.tensor([1, 4]), 2, PinnedStager("cpu"), with_color_crops=False)
    assert pose_only.color_crops is None  # the vertex phase and pose evaluation draw no colours
    # The colour crops hold the same hand at twice the resolution: pooled 2x they match the backbone's.
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(inputs.color_crops[0].copy()).float().flatten(0, 1), 2)
    backbone = torch.from_numpy(inputs.data[0].copy()).float().flatten(0, 1)
    error, shifted = (pooled - backbone).abs().mean(), (backbone - backbone.roll(1, dims=-1)).abs().mean()
    assert error < 0.5 * shifted  # measured: 1.4 against 23 grey levels
    # An image-phase training step reads them and gives finite losses.
    pipe.train()
    pipe.model.step = config.pipeline.model.image_loss_from
    losses = pipe.get_train_loss_dict(pipe.model.step)[1]
    assert "image_loss" in losses and all(torch.isfinite(v) for v in losses.values())


def test_printed_and_saved_config_hold_the_settled_colour_crop_scale(tmp_path, monkeypatch, capsys):
    import yaml
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=6)
    config.output_dir, config.timestamp = tmp_path / "runs", "a"
    config.pipeline.datamanager.color_crop_scale = 3  # nothing reads colour crops without pixel colours
    config.print_to_terminal()  # what ns-train prints first shows the settled scale too
    assert "color_crop_scale=1," in "".join(capsys.readouterr().out.split())
    config.pipeline.datamanager.color_crop_scale = 3
    config.save_config()
    saved = yaml.load((config.get_base_dir() / "config.yml").read_text(), Loader=yaml.Loader)
    assert saved.pipeline.datamanager.color_crop_scale == 1
    # A refused setting ends before anything is written.
    config.timestamp = "b"
    config.pipeline.model.pixel_colors, config.pipeline.model.box_jitter = True, True
    config.pipeline.datamanager.color_crop_scale = 2
    with pytest.raises(Hand4DGSError, match="box-jitter"):
        config.print_to_terminal()
    with pytest.raises(Hand4DGSError, match="box-jitter"):
        config.save_config()
    assert not config.get_base_dir().exists()

