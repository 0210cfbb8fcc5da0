"""A video's frames and hand masks, decoded once at the training resolution and memory-mapped.

Training reads a few frames per step from anywhere in the set. Decoding them all into memory
would make host memory grow with the number of videos (13 GiB of pixels for 192 videos of 300
frames at 320x240); as uint8 arrays in the feature cache they are paged in and out by the
operating system like the crops and tokens beside them, and decoded only on a video's first run.
The training frames' mean hand colour, where the model starts its colours, is read from them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hand4dgs_ns.data.sequence_format import hand_pixels
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.cache import CacheKey, FeatureCache, files_identity, video_folder_name, video_source

_CHUNK = 32

HAND_COLOR_KEY = "hand4dgs_mean_hand_color"
"""Training metadata: :func:`mean_hand_color` of the training frames, where the model starts its colour decoder."""


def read_resized(path: Path, what: str, size: tuple[int, int], resample: Image.Resampling, mode: str | None) -> np.ndarray:
    """A frame or mask as an array, resized to ``size`` (width, height) when needed."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode) if mode else im
            if im.size != size:
                im = im.resize(size, resample)
            return np.asarray(im)
    except OSError as err:
        raise Hand4DGSError(f"{what} {path} cannot be read ({err}): restore the file or rebuild the sequence.") from None


def image_sizes(paths: Sequence[Path]) -> set[tuple[int, int]]:
    """The (width, height) of each file, read from the headers only."""
    sizes = set()
    for path in paths:
        try:
            with Image.open(path) as im:
                sizes.add(im.size)
        except OSError as err:
            raise Hand4DGSError(f"{path} cannot be read ({err}): restore the file or rebuild the sequence.") from None
    return sizes


def decoded_video(
    image_paths: Sequence[Path], mask_paths: Sequence[Path], size: tuple[int, int], cache: FeatureCache
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame (F, H, W, 3) and mask (F, H, W) of a video at ``size`` (width, height), uint8,
    as read-only memory maps; frames are box-filtered, masks keep their labels (nearest)."""
    folder = video_folder_name(image_paths)
    arrays = []
    for what, paths, resample, mode in (
        ("Frame", image_paths, Image.Resampling.BOX, "RGB"),
        ("Mask", mask_paths, Image.Resampling.NEAREST, None),
    ):
        key = CacheKey(
            frames=files_identity(paths), boxes="", backbone="", weights="",
            crop=f"resize={size[0]}x{size[1]};{resample.name.lower()}", content="frames" if what == "Frame" else "masks",
        )

        def build(paths=paths, what=what, resample=resample, mode=mode) -> Iterator[np.ndarray]:
            for start in range(0, len(paths), _CHUNK):
                yield np.stack([read_resized(p, what, size, resample, mode) for p in paths[start : start + _CHUNK]])

        name = f"{folder}/{key.content}-{size[0]}x{size[1]}"
        arrays.append(cache.get_or_build(key, build, total=len(paths), name=name, source=video_source(image_paths)))
    return arrays[0], arrays[1]


def mean_hand_color(
    videos: Sequence[tuple[np.ndarray, np.ndarray, Sequence[int]]], max_frames: int = 64
) -> np.ndarray | None:
    """Mean RGB (0 to 1) over the hand pixels (mask labels 1 and 2) of about ``max_frames`` frames,
    the same number from each video, spread evenly over its listed frames from the first to the last
    (its middle one where it gets one only); a mean over pixels, so larger hands weigh more.
    ``videos`` holds (frames, masks, frame indices) per video, as decoded by :func:`decoded_video`.
    None where no hand pixel is found."""
    per_video = max(1, max_frames // max(1, len(videos)))
    total, count = np.zeros(3), 0
    for images, masks, frames in videos:
        k = min(per_video, len(frames))
        positions = np.linspace(0, len(frames) - 1, k) if k > 1 else np.array([(len(frames) - 1) / 2])
        picks = np.asarray(frames)[np.unique(positions.round().astype(int))]
        for i in picks:
            hand = hand_pixels(masks[i])
            total += images[i][hand].sum(axis=0, dtype=np.float64)
            count += int(hand.sum())
    return total / (255.0 * count) if count else None
