"""A small convolutional crop encoder that trains with the model (no pretrained weights needed).

The default backbone of the embedded synthetic demo: 64 x 48 crops, four stride-2 stages,
a 4 x 3 grid of 128-channel tokens. Cheap enough to train on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor, nn

from hand4dgs_ns.features.backbones.base import HandBackbone


@dataclass(frozen=True)
class SmallCNNConfig:
    """Sizes of :class:`SmallCNN`."""

    input_hw: tuple[int, int] = (64, 48)
    """Crop height and width; each must be divisible by 2 ** len(channels)."""
    channels: tuple[int, ...] = (32, 64, 128, 128)
    """Output channels of each stride-2 stage; the last is the token width."""
    groups: int = 8
    """GroupNorm groups (must divide every channel count)."""


def _conv_gn(cin: int, cout: int, stride: int, groups: int, relu: bool = True) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    layers: list[nn.Module] = [conv, nn.GroupNorm(groups, cout)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class SmallCNN(HandBackbone):
    """Trainable crop encoder: ``(N, 3, 64, 48)`` -> ``(N, 12, 128)`` with the defaults."""

    def __init__(self, config: SmallCNNConfig = SmallCNNConfig()):
        super().__init__()
        stride = 2 ** len(config.channels)
        h, w = config.input_hw
        if h % stride or w % stride:
            raise ValueError(f"input {config.input_hw} is not divisible by {stride}")
        self.config = config
        self.name = "small-cnn"
        self.num_tokens = (h // stride) * (w // stride)
        self.token_dim = config.channels[-1]
        self.input_hw = config.input_hw
        self.trainable = True
        self.checkpoint = None
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(config.channels):
            last = i == len(config.channels) - 1
            layers += _conv_gn(cin, cout, 2, config.groups)
            # No ReLU at the very end: zero-mean, unit-scale tokens suit the heads' squashing.
            layers += _conv_gn(cout, cout, 1, config.groups, relu=not last)
            cin = cout
        self.net = nn.Sequential(*layers)

    def forward(self, crops: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n t c"]:
        if tuple(crops.shape[-2:]) != self.input_hw:
            raise ValueError(f"expected crops of {self.input_hw}, got {tuple(crops.shape[-2:])}")
        return self.net(crops).flatten(2).transpose(1, 2)
