"""Jitter of training crops and boxes (hand4dgs_ns/features/augment.py)."""

from __future__ import annotations

import torch

from hand4dgs_ns.features.augment import Augment, BoxJitter, CropJitter
from hand4dgs_ns.features.crops import crop_hands_per_image, crop_params, crops_to_uint8
from hand4dgs_ns.method_configs import hand4dgs_generalized_trainer, hand4dgs_trainer


def _crops(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    crops = torch.randint(40, 200, (6, 2, 3, 8, 6), generator=g, dtype=torch.uint8)
    crops[5, 1] = 0  # an absent hand
    return crops


def test_one_transform_per_video_and_hand():
    crops = _crops()
    crops[1] = crops[0]  # the same frame twice in one video ...
    crops[3] = crops[0]  # ... and in another video
    video = torch.tensor([7, 7, 7, 9, 9, 9])
    out = CropJitter()(crops, video, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == crops.shape
    assert torch.equal(out[0], out[1]), "frames of one video share their colour transform"
    assert not torch.equal(out[0], out[3]), "another video gets another transform"
    assert not torch.equal(out[0, 0] - crops[0, 0], out[0, 1] - crops[0, 1]), "each hand its own"
    assert (out[5, 1] == 0).all(), "an absent hand stays zeros"
    again = CropJitter()(crops, video, torch.Generator().manual_seed(1))
    assert torch.equal(out, again), "seeded: the same generator state gives the same jitter"


def test_jitter_stays_within_its_ranges():
    crops = torch.full((2, 2, 3, 4, 4), 100, dtype=torch.uint8)  # flat crops: contrast does nothing
    jitter = CropJitter(brightness=1.5, contrast=1.4, colour=1.2)
    ratios = []
    for seed in range(50):
        out = jitter(crops, torch.tensor([0, 1]), torch.Generator().manual_seed(seed)).float()
        ratios.append(out / 100)
    ratios = torch.stack(ratios)
    assert ratios.min() >= 1 / (1.5 * 1.2) - 0.01 and ratios.max() <= 1.5 * 1.2 + 0.01
    assert ratios.std() > 0.1, "the factors must actually vary"


def test_generalised_steps_mix_videos_and_both_methods_ask_for_the_articulation():
    generalized, per_video = hand4dgs_generalized_trainer(100).pipeline, hand4dgs_trainer(100).pipeline
    assert generalized.datamanager.videos_per_step == 4 and generalized.model.relative_vertex_weight == 1.0
    assert per_video.datamanager.videos_per_step == 1 and per_video.model.relative_vertex_weight == 1.0


def test_jitter_is_an_option_off_by_default():
    for config in (hand4dgs_generalized_trainer(100), hand4dgs_trainer(100)):
        assert not config.pipeline.model.crop_jitter and not config.pipeline.model.box_jitter


def test_network_inputs_jitter_crops_on_request_only():
    import numpy as np

    from hand4dgs_ns.features.frame_inputs import FrameInputs
    from hand4dgs_ns.features.staging import PinnedStager

    data = tuple(np.asarray(_crops(seed)[:4]) for seed in (0, 1))  # two videos of 4 frames
    eye = torch.eye(4).expand(8, 4, 4)
    inputs = FrameInputs(
        kind="crops", data=data, bbox=torch.zeros(8, 2, 4), valid=torch.ones(8, 2, dtype=torch.bool),
        K=torch.eye(3).expand(8, 3, 3), c2w=eye, image_hw=torch.tensor([[60, 80], [60, 80]]),
        offsets=torch.tensor([0, 4]), lengths=torch.tensor([4, 4]),
    )
    sequence, frame, stager = torch.tensor([0, 1]), torch.tensor([1, 2]), PinnedStager(torch.device("cpu"))
    plain = inputs.network_inputs(sequence, frame, 1, stager)
    jittered = inputs.network_inputs(sequence, frame, 1, stager, augment=Augment(torch.Generator().manual_seed(0), colour=CropJitter()))
    expected = torch.from_numpy(np.concatenate([data[0][0:3], data[1][1:4]]))
    assert torch.equal(plain.frames, expected), "without jitter the cached crops go through unchanged"
    assert jittered.frames.shape == plain.frames.shape and not torch.equal(jittered.frames, plain.frames)
    assert torch.equal(jittered.window, plain.window)


def _smooth_image(height: int = 120, width: int = 160) -> torch.Tensor:
    """A smooth colour pattern (bilinear resampling twice stays close to once)."""
    y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    rgb = torch.stack([torch.sin(x / 9) * torch.cos(y / 13), torch.sin((x + y) / 17), torch.cos(x / 23 - y / 7)], -1)
    return 0.5 + 0.4 * rgb


def test_box_jitter_crops_are_the_crops_of_the_moved_boxes():
    # Cut both hands' crops of one frame as the feature cache does (left mirrored), jitter them,
    # and compare with crops cut directly from the frame at the jittered boxes.
    image = _smooth_image()[None]
    bbox = torch.tensor([[[30.0, 40.0, 62.0, 80.0], [90.0, 30.0, 126.0, 66.0]]])
    flip = torch.tensor([[True, False]])

    def cut(boxes: torch.Tensor) -> torch.Tensor:
        centre, size = crop_params(boxes)
        return crops_to_uint8(crop_hands_per_image(image, centre, size, flip, (64, 48), normalize=False))

    crops = cut(bbox)
    for seed in range(4):
        moved, new_bbox = BoxJitter(zoom=1.4)(crops, torch.tensor([0]), bbox, torch.tensor([0]), torch.Generator().manual_seed(seed))
        assert moved.dtype == torch.uint8 and moved.shape == crops.shape
        assert not torch.allclose(new_bbox, bbox), "the boxes must move"
        size, new_size = (bbox[..., 2:] - bbox[..., :2]), (new_bbox[..., 2:] - new_bbox[..., :2])
        ratio = new_size / size
        assert torch.allclose(ratio[..., 0], ratio[..., 1]) and (ratio >= 1 / 1.4 - 1e-5).all() and (ratio <= 1).all()
        error = (moved.float() - cut(new_bbox).float()).abs()
        assert error.mean() < 0.5 and error.max() <= 3, (seed, error.mean(), error.max())  # uint8 levels


def test_box_jitter_is_one_change_per_video_and_hand():
    crops = _crops()
    bbox = torch.tensor([[10.0, 10.0, 30.0, 40.0], [50.0, 12.0, 70.0, 44.0]]).expand(4, 2, 4).clone()
    _, boxes = BoxJitter()(crops, torch.tensor([7, 7, 7, 9, 9, 9]), bbox, torch.tensor([7, 7, 9, 9]), torch.Generator().manual_seed(2))
    assert torch.equal(boxes[0], boxes[1]) and torch.equal(boxes[2], boxes[3]), "frames of one video share the change"
    assert not torch.equal(boxes[0], boxes[2]), "another video gets another change"
    assert not torch.allclose(boxes[0, 0] - bbox[0, 0], boxes[0, 1] - bbox[0, 1]), "each hand its own"
