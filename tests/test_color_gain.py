"""The per-frame colour gain (``--pipeline.model.color-gain``): starts at 1, scales colours, follows the frame."""

from __future__ import annotations

import math

import torch

from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec, NetworkInputs

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


def test_with_crops_the_gain_also_reads_each_crops_brightness():
    spec = InputSpec("crops", (3, 64, 48))
    sizes = dict(window=3, gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)
    torch.manual_seed(0)
    net = HandNetwork(HandNetworkConfig(color_gain=True, **sizes), spec)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (4, 2, 3, 64, 48), generator=g, dtype=torch.uint8)
    frames[2] = frames[2] // 2  # the middle frame of the second window is darker
    x = NetworkInputs(
        frames=frames,
        window=torch.tensor([[0, 1, 2], [1, 2, 3]]),
        bbox=torch.tensor([[10.0, 10, 30, 30], [45, 12, 70, 40]]).expand(2, 2, 4),
        valid=torch.ones(2, 2, dtype=torch.bool),
        K=torch.tensor([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]]).expand(2, 3, 3),
        c2w=torch.eye(4).expand(2, 4, 4),
        image_hw=torch.tensor([60, 80]).expand(2, 2),
    )
    brightness = HandNetwork.crop_brightness(x)
    expected = torch.log(frames[[1, 2]].float().mean(dim=(-1, -2)) / 255.0 + 1e-2)  # each window's centre frame
    torch.testing.assert_close(brightness, expected)
    assert net.branches[0].gain_head[0].in_features == net.branches[0].tc.conv.out_channels * net.token_shape[0] + 3

    # The brightness reaches the gain: with only its weights set, each frame's gain follows its crops' mean colour.
    head = net.branches[0].gain_head
    with torch.no_grad():
        head[0].weight.zero_()
        head[0].weight[:3, -3:] = torch.eye(3)
        head[0].bias.fill_(5.0)  # keep the ReLU open
        head[-1].weight[:, :3] = torch.eye(3)
        head[-1].bias.fill_(-5.0)  # log-gain = 0.7 tanh(brightness)
        out = net(x).colors
        ref = HandNetwork(HandNetworkConfig(**sizes), spec)
        ref.load_state_dict(net.state_dict(), strict=False)
        plain = ref(x).colors
    half = out.shape[1] // 2
    ratio = (out[:, :half] / plain[:, :half]).mean(dim=1)
    expected_gain = torch.exp(0.7 * torch.tanh(brightness[:, 0]))
    torch.testing.assert_close(ratio, expected_gain, rtol=1e-4, atol=1e-5)
    assert (ratio[1] < ratio[0]).all()
