"""The per-frame colour gain (``--pipeline.model.color-gain``): starts at 1, scales colours, follows the frame."""

from __future__ import annotations

import math

import torch

from tiny_network import tiny_inputs, twin_networks


def test_the_gain_starts_at_one_and_multiplies_each_hands_colours():
    plain, gained = twin_networks(color_gain=True)
    x = tiny_inputs(torch.randn(3, 2, 4, 8))
    with torch.no_grad():
        torch.testing.assert_close(gained(x).colors, plain(x).colors)  # zero-initialised: gain 1
        head = gained.branches[1].gain_head[-1]
        head.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
        out, ref = gained(x), plain(x)
    g = out.colors.shape[1] // 2
    torch.testing.assert_close(out.colors[:, :g], ref.colors[:, :g])  # the left hand's gain is still 1
    expected = torch.exp(0.7 * torch.tanh(torch.tensor([0.5, 0.0, -0.5])))
    torch.testing.assert_close(out.colors[:, g:], ref.colors[:, g:] * expected)
    torch.testing.assert_close(out.vertices, ref.vertices)  # appearance only: the hands stay where they are

    # However large the head's output, the gain stays within exp(+-0.7).
    with torch.no_grad():
        head.bias.copy_(torch.tensor([50.0, -50.0, 0.0]))
        saturated = gained(x).colors[:, g:] / ref.colors[:, g:]
    bound = torch.tensor([math.exp(0.7), math.exp(-0.7), 1.0])
    torch.testing.assert_close(saturated, bound.expand_as(saturated))


def test_the_gain_is_an_appearance_parameter_that_follows_the_frames_features():
    _, gained = twin_networks(color_gain=True)
    head = gained.branches[0].gain_head
    appearance = {id(p) for p in gained.appearance_parameters()}
    assert {id(p) for p in head.parameters()} <= appearance
    assert not {id(p) for p in head.parameters()} & {id(p) for p in gained.pose_parameters()}

    frames = torch.randn(2, 2, 4, 8)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    colors = gained(tiny_inputs(frames)).colors
    g = colors.shape[1] // 2
    ratio = colors[:, :g] / gained(tiny_inputs(frames[[0, 0]])).colors[:, :g]
    assert torch.allclose(ratio[0], torch.ones_like(ratio[0]))
    per_channel = ratio[1].mean(dim=0)
    # Frame 1 has other features, so another gain: one factor per channel over all its Gaussians.
    assert not torch.allclose(per_channel, torch.ones(3), atol=1e-3)
    torch.testing.assert_close(ratio[1], per_channel.expand_as(ratio[1]), rtol=1e-4, atol=1e-5)

    colors.sum().backward()
    assert head[-1].weight.grad is not None and head[-1].weight.grad.abs().sum() > 0

