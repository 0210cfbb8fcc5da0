"""The colour decoder starts at the training frames' mean hand colour (``--pipeline.model.mean-color-init``)."""

from __future__ import annotations

import numpy as np
import torch

from hand4dgs_ns.data.sequence_format import MASK_LEFT, MASK_OCCLUDER, MASK_RIGHT, hand_pixels
from hand4dgs_ns.features.frame_cache import HAND_COLOR_KEY, mean_hand_color


def test_mean_hand_color_reads_the_hand_pixels_of_the_listed_frames_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 6, 8, 3), dtype=np.uint8)
    masks = np.zeros((4, 6, 8), dtype=np.uint8)
    masks[:, 1:3, 2:4] = MASK_LEFT
    masks[:, 4, 5:8] = MASK_RIGHT
    masks[:, 0, :] = MASK_OCCLUDER  # a forearm: painted white, not the hand's colour
    images[masks == MASK_OCCLUDER] = 255
    images[1][hand_pixels(masks[1])] = (200, 100, 50)
    images[3][hand_pixels(masks[3])] = (100, 50, 0)
    color = mean_hand_color([(images, masks, [1, 3])])  # frames 0 and 2 held out
    np.testing.assert_allclose(color, np.array([150, 75, 25]) / 255.0)
    assert mean_hand_color([(images, np.zeros_like(masks), [0, 1])]) is None


def test_mean_hand_color_picks_frames_spread_over_each_video_and_weighs_pixels():
    # Frame i of each video is coloured i, so the mean tells which frames were read.
    frames = np.repeat(np.arange(10, dtype=np.uint8), 4 * 3).reshape(10, 2, 2, 3)
    masks = np.full((10, 2, 2), MASK_RIGHT, dtype=np.uint8)
    small = masks.copy()
    small[:, 0, :] = 0  # half the hand pixels
    # Two videos, two frames each: the first and last listed frames of each.
    color = mean_hand_color([(frames, masks, list(range(10))), (frames, small, [2, 4, 6])], max_frames=4)
    np.testing.assert_allclose(color * 255, np.full(3, (4 * (0 + 9) + 2 * (2 + 6)) / 12))
    # One frame a video: its middle listed frame.
    color = mean_hand_color([(frames, masks, [1, 3, 5, 7, 9])] * 5, max_frames=4)
    np.testing.assert_allclose(color * 255, np.full(3, 5.0))


def test_training_starts_the_colour_decoder_at_the_mean_hand_colour(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=9)
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    dm = pipe.datamanager
    train_frames = [c.frames.tolist() for c in dm._train.values()]
    assert train_frames and all(8 not in f and 0 not in f for f in train_frames)  # per video, every 8th frame is held out
    measured = dm.train_dataset.metadata[HAND_COLOR_KEY]

    def decoded(branch) -> torch.Tensor:
        return torch.sigmoid(branch.color_mlp(torch.zeros(1, branch.color_mlp[0].in_features)))[0]

    for branch in pipe.model.network.branches:  # as the pipeline built it
        torch.testing.assert_close(decoded(branch), measured, atol=1e-6, rtol=0)
    state = {k: v.clone() for k, v in pipe.model.state_dict().items()}

    # The random clip's hands are grey on average: a skin colour set in the metadata the model reads
    # shows the decoder starting there, grey with the option off or with pixel colours, and a
    # checkpoint's weights replacing the start.
    skin = torch.tensor([0.45, 0.3, 0.2])
    dm.train_dataset.metadata[HAND_COLOR_KEY] = skin
    grey = torch.full((3,), 0.5)
    for options, start in (({}, skin), ({"mean_color_init": False}, grey), ({"pixel_colors": True}, grey)):
        pipe.model.config.mean_color_init = options.get("mean_color_init", True)
        pipe.model.config.pixel_colors = options.get("pixel_colors", False)
        pipe.model.populate_modules()
        for branch in pipe.model.network.branches:
            torch.testing.assert_close(decoded(branch), start, atol=1e-6, rtol=0)
    pipe.model.config.pixel_colors = False
    pipe.model.config.mean_color_init = True
    pipe.model.populate_modules()
    pipe.model.load_state_dict(state)
    for branch in pipe.model.network.branches:
        torch.testing.assert_close(decoded(branch), measured, atol=1e-6, rtol=0)
