"""A small convolutional crop encoder that trains with the model (no pretrained weights needed).

The default backbone of the embedded synthetic demo: 64 x 48 crops, four stride-2 stages,
a 4 x 3 grid of 128-channel tokens. Cheap enough to train on a CPU. Larger crops (e.g. 128 x 96,
``--pipeline.datamanager.crop-size 128 96``) get one more stage per doubling, so the token grid
and the heads after it stay the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from hand4dgs_ns.features.backbones.base import HandBackbone


DEFAULT_CROP_HW = (64, 48)
"""Crop size of the small CNN unless the datamanager's ``crop_size`` says otherwise."""
DEFAULT_CHANNELS = (32, 64, 128, 128)
"""Widths of the last four stride-2 stages (the network's ``cnn_channels``)."""
GROUPS = 8
"""GroupNorm groups: every width is a multiple of it."""


@dataclass(frozen=True)
class SmallCNNConfig:
    """Sizes of :class:`SmallCNN`."""

    input_hw: tuple[int, int] = DEFAULT_CROP_HW
    """Crop height and width: a power-of-two multiple of 64 x 48 (64 x 48, 128 x 96, ...)."""
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    """Output channels of the last four stride-2 stages; the last is the token width. Stages
    added for larger crops come first, with the first stage's width."""
    groups: int = GROUPS
    """GroupNorm groups (must divide every channel count)."""


def stage_channels(config: SmallCNNConfig) -> tuple[int, ...]:
    """Every stride-2 stage's width: extra stages in front until the grid is 4 x 3 tokens."""
    h, w = config.input_hw
    base_h, base_w = DEFAULT_CROP_HW
    scale = h // base_h
    if (h, w) != (base_h * scale, base_w * scale) or scale < 1 or scale & (scale - 1):
        raise ValueError(f"small-cnn crops must be 64 x 48 times a power of two (128 x 96, ...), got {h} x {w}")
    return (config.channels[0],) * (scale.bit_length() - 1) + tuple(config.channels)


def _conv_gn(cin: int, cout: int, stride: int, groups: int, relu: bool = True) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    layers: list[nn.Module] = [conv, nn.GroupNorm(groups, cout)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class SmallCNN(HandBackbone):
    """Trainable crop encoder: ``(N, 3, 64, 48)`` -> ``(N, 12, 128)`` with the defaults."""

    def __init__(self, config: SmallCNNConfig = SmallCNNConfig()):
        super().__init__()
        channels = stage_channels(config)
        h, w = config.input_hw
        stride = 2 ** len(channels)
        self.config = config
        self.name = "small-cnn"
        self.num_tokens = (h // stride) * (w // stride)
        self.token_dim = config.channels[-1]
        self.input_hw = config.input_hw
        self.trainable = True
        self.checkpoint = None
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(channels):
            last = i == len(channels) - 1
            layers += _conv_gn(cin, cout, 2, config.groups)
            # No ReLU at the very end: zero-mean, unit-scale tokens suit the heads' squashing.
            layers += _conv_gn(cout, cout, 1, config.groups, relu=not last)
            cin = cout
        self.net = nn.Sequential(*layers)
        # The feature map two stages before the tokens (16 x 12, four times the token grid):
        # fine enough to say where on the hand a projected joint lands.
        self._map_end = 6 * (len(channels) - 2)  # each stage: conv, norm, ReLU, conv, norm, ReLU
        self.map_channels = channels[-3]
        self._match_layout()

    def _apply(self, fn, recurse: bool = True) -> SmallCNN:
        # Every device move (.to, .cuda, .cpu) goes through here: keep the layout the device wants.
        super()._apply(fn, recurse)
        self._match_layout()
        return self

    def _match_layout(self) -> None:
        """Channels-last convolution weights on the CPU, the default layout elsewhere.

        oneDNN's CPU convolutions run a forward and backward pass of these crops about 1.4x
        faster on channels-last weights and inputs (most of a CPU training step); on CUDA the
        default layout is the one measured.
        """
        layout = _layout(self.net[0].weight.device)
        for module in self.net:
            if isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=layout)
                if module.weight.grad is not None:
                    module.weight.grad = module.weight.grad.contiguous(memory_format=layout)

    def forward(self, crops: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n t c"]:
        return self.forward_with_map(crops)[0]

    def forward_with_map(self, crops: Float[Tensor, "n 3 h w"]) -> tuple[Float[Tensor, "n t c"], Float[Tensor, "n m h4 w4"]]:
        """The tokens and the feature map two stages before them (``map_channels`` channels, four
        times the token grid's height and width), which pixel-aligned feedback samples."""
        if tuple(crops.shape[-2:]) != self.input_hw:
            raise ValueError(f"expected crops of {self.input_hw}, got {tuple(crops.shape[-2:])}")
        crops = crops.contiguous(memory_format=_layout(crops.device))
        feature_map = self.net[: self._map_end](crops)
        return self.net[self._map_end :](feature_map).flatten(2).transpose(1, 2), feature_map


def _layout(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format
