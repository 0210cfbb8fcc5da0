"""``--pipeline.model.video-shape``: one shape per hand for a whole video, the mean of its frames' shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.inference.predict import predict_batch
from hand4dgs_ns.network.video_shape import mean_shape, video_shape

from tiny_network import tiny_inputs, twin_networks


def test_mean_shape_counts_the_frames_where_each_hand_is_present():
    betas = torch.tensor([[[1.0, 2.0], [5.0, 5.0]], [[3.0, 4.0], [9.0, 9.0]], [[100.0, 100.0], [7.0, 7.0]]])
    valid = torch.tensor([[True, False], [True, False], [False, False]])
    torch.testing.assert_close(mean_shape(betas, valid), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))  # absent: the mean shape


def test_given_shapes_replace_the_predicted_ones_and_nothing_else():
    _, network = twin_networks(mirrored_pose=True)
    for p in network.parameters():  # non-zero heads, so the shape really moves the mesh
        torch.nn.init.normal_(p, std=0.05)
    torch.manual_seed(1)
    x = tiny_inputs(torch.randn(3, 2, 4, 8))
    with torch.no_grad():
        own = network(x)
        same = network(dataclasses.replace(x, betas=own.betas))
        given = torch.randn(own.betas.shape[1:]).expand_as(own.betas)  # one shape per hand, for every frame
        fixed = network(dataclasses.replace(x, betas=given))
    for name in ("vertices", "joints", "means", "colors"):  # the predicted shapes given back change nothing
        torch.testing.assert_close(getattr(same, name), getattr(own, name))
    torch.testing.assert_close(fixed.betas, given)
    assert (fixed.vertices - own.vertices).abs().max() > 1e-4  # the shape moves the mesh (both hands, mirrored or not)
    assert all((fixed.vertices[:, slot] - own.vertices[:, slot]).abs().max() > 1e-4 for slot in (0, 1))
    torch.testing.assert_close(fixed.hand_pose, own.hand_pose)  # the pose stays each frame's (no pixel feedback here)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from conftest import tiny_pipeline

    mp = pytest.MonkeyPatch()
    yield tiny_pipeline(tmp_path_factory.mktemp("video_shape"), mp, num_frames=9, video_shape=True)
    mp.undo()


def test_prediction_gives_each_hand_its_video_shape_and_training_each_frames_own(pipeline):
    model = pipeline.model
    frames = torch.arange(9)
    sequence = torch.zeros_like(frames)
    with torch.no_grad():
        model.train()
        per_frame = model.predict_hands(sequence, frames, with_gaussians=False)
        model.eval()
        some = model.predict_hands(sequence[:2], torch.tensor([3, 7]))
    assert (per_frame.betas - per_frame.betas[:1]).abs().amax() > 1e-6  # the frames' own shapes differ
    expected = mean_shape(per_frame.betas, per_frame.valid)
    torch.testing.assert_close(some.betas, expected.expand(2, *expected.shape))  # each frame: the mean over all nine
    # Prediction outside the model (hand4dgs infer, export, render) gives the same shape and hands.
    stager = PinnedStager("cpu")
    shape = video_shape(model.network, model.inputs, 0, stager, batch_frames=4)
    torch.testing.assert_close(shape, expected)
    outside, _ = predict_batch(model.network, model.inputs, 0, torch.tensor([3, 7]), stager, with_gaussians=True, shape=shape)
    for name in ("vertices", "joints", "means", "colors"):
        torch.testing.assert_close(getattr(outside, name), getattr(some, name))


def _all_frames(model):
    """Every frame of the fixture's one sequence, per frame (the model in training mode)."""
    model.train()
    hands = model.predict_hands(torch.zeros(9, dtype=torch.long), torch.arange(9), with_gaussians=False)
    return mean_shape(hands.betas, hands.valid)


def test_the_video_shape_follows_the_weights_as_they_train_or_load(pipeline):
    model = pipeline.model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    frames = torch.tensor([0, 4])
    try:
        with torch.no_grad():
            model.eval()
            before = model.predict_hands(torch.zeros_like(frames), frames, with_gaussians=False).betas
            for p in model.network.parameters():
                p.add_(0.01)
            expected = _all_frames(model)  # a training-mode forward, as a training step's
            model.eval()
            after = model.predict_hands(torch.zeros_like(frames), frames, with_gaussians=False).betas
            assert (after - before).abs().max() > 1e-5
            torch.testing.assert_close(after[0], expected)
            model.load_state_dict(saved)  # new weights in eval mode, without a training forward
            reloaded = model.predict_hands(torch.zeros_like(frames), frames, with_gaussians=False).betas
            torch.testing.assert_close(reloaded, before)
    finally:
        model.load_state_dict(saved)
        model.eval()


def test_a_network_without_the_option_keeps_its_per_frame_shapes(pipeline):
    model = pipeline.model
    model.config.video_shape = False  # the model's config is the network's
    try:
        assert video_shape(model.network, model.inputs, 0, PinnedStager("cpu")) is None
        model.eval()
        with torch.no_grad():
            hands = model.predict_hands(torch.zeros(9, dtype=torch.long), torch.arange(9), with_gaussians=False)
        assert (hands.betas - hands.betas[:1]).abs().amax() > 1e-6
    finally:
        model.config.video_shape = True


def test_each_frame_takes_the_shape_of_its_own_video(pipeline):
    model = pipeline.model
    model.eval()
    shapes = {0: torch.zeros(2, 3), 1: torch.ones(2, 3)}  # two videos' shapes, as if worked out already
    model._video_shapes.update(shapes)
    try:
        torch.testing.assert_close(model._shapes_of(torch.tensor([1, 0, 1])), torch.stack([shapes[1], shapes[0], shapes[1]]))
    finally:
        model._video_shapes.clear()
