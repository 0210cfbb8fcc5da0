"""A tiny Hand-4DGS network on token inputs, and frames to feed it: for tests of the network's options."""

from __future__ import annotations

from typing import Optional

import torch

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec, NetworkInputs

TINY_SIZES = dict(window=1, gaussians_per_face=1, head_width=16, head_layers=2, embed_rank=8, embed_dim=8, appearance_width=8)
"""Sizes small enough for a CPU test; ``window`` 1 so each frame is its own window."""


def tiny_inputs(frames: torch.Tensor, c2w: Optional[torch.Tensor] = None) -> NetworkInputs:
    """Frames of (B, 2, 4, 8) tokens, each predicted from itself, with fixed boxes and intrinsics."""
    b = frames.shape[0]
    return NetworkInputs(
        frames=frames,
        window=torch.arange(b)[:, None],
        bbox=torch.tensor([[10.0, 10, 30, 30], [45, 12, 70, 40]]).expand(b, 2, 4),
        valid=torch.ones(b, 2, dtype=torch.bool),
        K=torch.tensor([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]]).expand(b, 3, 3),
        c2w=torch.eye(4).expand(b, 4, 4) if c2w is None else c2w,
        image_hw=torch.tensor([60, 80]).expand(b, 2),
    )


def crop_inputs(b: int = 2) -> NetworkInputs:
    """B frames of random 64 x 48 crops (each its own window) seen by a moved, turned camera."""
    g = torch.Generator().manual_seed(1)
    c2w = torch.eye(4).repeat(b, 1, 1)  # a moved, turned camera: colours are sampled in its frame, not the world's
    c2w[:, :3, :3] = axis_angle_to_matrix(torch.tensor([0.1, -0.3, 0.2])).expand(b, 3, 3)
    c2w[:, :3, 3] = torch.tensor([0.4, -0.2, 1.5])
    return NetworkInputs(
        frames=torch.randint(0, 256, (b, 2, 3, 64, 48), dtype=torch.uint8, generator=g),
        window=torch.arange(b)[:, None],
        bbox=torch.tensor([[10.0, 10, 30, 30], [45, 12, 70, 40]]).expand(b, 2, 4),
        valid=torch.ones(b, 2, dtype=torch.bool),
        K=torch.tensor([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]]).expand(b, 3, 3),
        c2w=c2w,
        image_hw=torch.tensor([60, 80]).expand(b, 2),
    )


def twin_networks(**option: object) -> tuple[HandNetwork, HandNetwork]:
    """The same tiny network without and with ``option``, sharing every weight they both have."""
    spec = InputSpec("tokens", (4, 8))
    torch.manual_seed(0)
    plain = HandNetwork(HandNetworkConfig(**TINY_SIZES), spec)
    torch.manual_seed(0)
    variant = HandNetwork(HandNetworkConfig(**option, **TINY_SIZES), spec)
    variant.load_state_dict(plain.state_dict(), strict=False)
    return plain, variant
