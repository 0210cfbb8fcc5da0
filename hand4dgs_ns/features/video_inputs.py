"""A set of videos' network inputs, built through the feature cache: the one way to make them.

The datamanager (training and evaluation), ``hand4dgs infer`` and the HaMeR runner all come
here, so a video's crops or tokens are cut, computed and cached the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
from jaxtyping import Bool, Float

from hand4dgs_ns.features.backbones import BackboneName, HandBackbone, make_backbone
from hand4dgs_ns.features.build_pool import map_videos
from hand4dgs_ns.features.cache import FeatureCache, hand_features_for_sequence
from hand4dgs_ns.features.estimates import encode_estimates
from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.paths import FEATURES_DIR, cache_root


class VideoFrames(Protocol):
    """What a video must offer to be turned into network inputs (e.g. a ``SequenceTensors``)."""

    image_paths: Sequence[Path]
    bbox: Float[torch.Tensor, "F 2 4"]
    valid: Bool[torch.Tensor, "F 2"]
    K: Float[torch.Tensor, "F 3 3"]
    c2w: Float[torch.Tensor, "F 4 4"]
    pseudo_joints: Float[torch.Tensor, "F 2 21 3"]
    width: int
    height: int


def feature_cache(cache_dir: Optional[Path]) -> FeatureCache:
    """The feature cache in ``cache_dir``, or in the user cache folder (see :mod:`hand4dgs_ns.paths`)."""
    return FeatureCache(Path(cache_dir) if cache_dir is not None else cache_root() / FEATURES_DIR)


def frozen_backbone_device(backbone: HandBackbone) -> HandBackbone:
    """A frozen backbone on the GPU when there is one (its tokens are computed once, for the cache)."""
    return backbone.cuda() if not backbone.trainable and torch.cuda.is_available() else backbone


def video_features(video: VideoFrames, backbone: HandBackbone | CropCutter, cache: FeatureCache) -> np.ndarray:
    """One video's cached backbone inputs (crops) or outputs (tokens), built on first use."""
    return hand_features_for_sequence(list(video.image_paths), video.bbox.numpy(), video.valid.numpy(), backbone, cache)


@dataclass(frozen=True)
class CropCutter:
    """What :func:`hand_features_for_sequence` needs of a trainable backbone to cut and cache its
    crops, for crops no backbone reads (the colour crops of ``pixel_colors``)."""

    input_hw: tuple[int, int]
    name: str = "crops"
    trainable: bool = True

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(())  # no weights: the crops are cut on the CPU


def build_frame_inputs(
    videos: Sequence[VideoFrames],
    backbone: BackboneName,
    hamer_checkpoint: Optional[Path] = None,
    cache_dir: Optional[Path] = None,
    crop_size: Optional[tuple[int, int]] = None,
    color_crop_scale: int = 1,
) -> FrameInputs:
    """Every frame's network inputs for ``videos``: backbone inputs memory-mapped from the cache, boxes, ego
    cameras, and the encoded per-frame estimates (a few hundred bytes a frame) for networks that read them.
    With ``color_crop_scale`` above 1 and crops, also crops that many times larger to read colours from."""
    model = frozen_backbone_device(make_backbone(backbone, hamer_checkpoint, crop_size))
    cache = feature_cache(cache_dir)
    # A frozen backbone's batches fill the GPU on their own: one video at a time.
    workers = None if model.trainable else 1
    data = tuple(map_videos(lambda video: video_features(video, model, cache), videos, cache, "Caching hand crops", workers))
    color_crops = None
    if color_crop_scale > 1 and model.trainable:
        h, w = model.input_hw
        cutter = CropCutter((h * color_crop_scale, w * color_crop_scale))
        color_crops = tuple(map_videos(lambda video: video_features(video, cutter, cache), videos, cache, "Caching colour crops"))
    lengths = torch.tensor([len(d) for d in data])
    return FrameInputs(
        kind="crops" if model.trainable else "tokens",
        data=data,
        bbox=torch.cat([v.bbox for v in videos]),
        valid=torch.cat([v.valid for v in videos]),
        K=torch.cat([v.K for v in videos]),
        c2w=torch.cat([v.c2w for v in videos]),
        image_hw=torch.tensor([[v.height, v.width] for v in videos]),
        offsets=torch.cumsum(lengths, 0) - lengths,
        lengths=lengths,
        estimates=torch.cat([encode_estimates(v.pseudo_joints, v.valid, v.c2w, v.K, v.bbox) for v in videos]),
        color_crops=color_crops,
    )
