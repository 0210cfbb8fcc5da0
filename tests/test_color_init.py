"""The colour decoder starts at the training frames' mean hand colour (``--pipeline.model.mean-color-init``)."""

from __future__ import annotations

import numpy as np
import torch

from hand4dgs_ns.data.sequence_format import MASK_LEFT, MASK_OCCLUDER, MASK_RIGHT
from hand4dgs_ns.features.frame_cache import HAND_COLOR_KEY, mean_hand_color


def test_mean_hand_color_reads_the_hand_pixels_of_the_listed_frames_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 6, 8, 3), dtype=np.uint8)
    masks = np.zeros((4, 6, 8), dtype=np.uint8)
    masks[:, 1:3, 2:4] = MASK_LEFT
    masks[:, 4, 5:8] = MASK_RIGHT
    masks[:, 0, :] = MASK_OCCLUDER  # a forearm: not the hand's colour
    images[1][masks[1] > 0] = (200, 100, 50)
    images[3][masks[3] > 0] = (100, 50, 0)
    color = mean_hand_color([(images, masks, [1, 3])])  # frames 0 and 2 held out
    np.testing.assert_allclose(color, np.array([150, 75, 25]) / 255.0)
    assert mean_hand_color([(images, np.zeros_like(masks), [0, 1])]) is None


def test_mean_hand_color_spreads_its_frames_over_the_videos():
    images = np.zeros((10, 2, 2, 3), dtype=np.uint8)
    masks = np.full((10, 2, 2), MASK_RIGHT, dtype=np.uint8)
    bright = images.copy()
    bright[:] = 255
    # Two frames a video: frames 0 and 9 of each (the ends of an even spread), each video as much.
    color = mean_hand_color([(images, masks, list(range(10))), (bright, masks, list(range(10)))], max_frames=4)
    np.testing.assert_allclose(color, [0.5, 0.5, 0.5])


def test_training_starts_the_colour_decoder_at_the_mean_hand_colour(tmp_path, monkeypatch):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=9)
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    dm = pipe.datamanager
    expected = mean_hand_color([(c.images, c.masks, c.frames.tolist()) for c in dm._train.values()])
    torch.testing.assert_close(dm.train_dataset.metadata[HAND_COLOR_KEY], torch.from_numpy(expected).float())
    # The random clip's hands are grey on average: a skin colour set in the metadata the model reads
    # shows the decoder starting there, and grey with the option off.
    skin = torch.tensor([0.45, 0.3, 0.2])
    dm.train_dataset.metadata[HAND_COLOR_KEY] = skin
    for option, start in ((True, skin), (False, torch.full((3,), 0.5))):
        pipe.model.config.mean_color_init = option
        pipe.model.populate_modules()
        for branch in pipe.model.network.branches:
            decoded = torch.sigmoid(branch.color_mlp(torch.zeros(1, branch.sizes.embed_dim)))[0]
            torch.testing.assert_close(decoded, start, atol=1e-6, rtol=0)
