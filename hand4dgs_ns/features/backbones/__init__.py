"""Hand feature backbones behind one interface, and the registry that builds them by name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from typing_extensions import assert_never

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones.base import HandBackbone
from hand4dgs_ns.features.backbones.small_cnn import SmallCNN, SmallCNNConfig
from hand4dgs_ns.features.backbones.vit_hamer import HAMER_VIT_H, HamerViT, ViTConfig

BackboneName = Literal["hamer-vit-h", "small-cnn"]

__all__ = [
    "HAMER_VIT_H",
    "BackboneName",
    "HamerViT",
    "HandBackbone",
    "SmallCNN",
    "SmallCNNConfig",
    "ViTConfig",
    "make_backbone",
]


def make_backbone(
    name: BackboneName, checkpoint: Path | None = None, crop_size: tuple[int, int] | None = None
) -> HandBackbone:
    """Builds a backbone on the CPU: HaMeR's ViT-H from ``checkpoint``, or a fresh small CNN
    for crops of ``crop_size`` (height, width; default 64 x 48)."""
    if name == "hamer-vit-h":
        if crop_size is not None:
            raise Hand4DGSError(
                f"The hamer-vit-h backbone reads its own crop size; leave out the crop size {tuple(crop_size)}."
            )
        if checkpoint is None:
            raise Hand4DGSError(
                "The hamer-vit-h backbone needs HaMeR's weights: "
                "download HaMeR's checkpoint from its project page and pass its path."
            )
        return HamerViT.from_checkpoint(Path(checkpoint))
    if name == "small-cnn":
        if checkpoint is not None:
            raise Hand4DGSError(
                f"The small-cnn backbone trains with the model and takes no weights file, so leave out {checkpoint}."
            )
        try:
            return SmallCNN(SmallCNNConfig(input_hw=tuple(crop_size)) if crop_size is not None else SmallCNNConfig())
        except ValueError as error:
            raise Hand4DGSError(f"Crop size {tuple(crop_size)} does not suit the small-cnn backbone: {error}.") from None
    assert_never(name)
