"""The hand data a hand dataparser hands to the datamanager and model, beside nerfstudio's cameras.

It travels in ``DataparserOutputs.metadata[METADATA_KEY]`` (nerfstudio passes that dict on to
``InputDataset.metadata`` and to the model's ``metadata`` argument). Each image's camera
carries ``metadata["sequence_index"]`` and ``metadata["frame_index"]`` ((N, 1) long), which
index :attr:`HandSequencesMetadata.sequences` and the frames of that sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from hand4dgs_ns.data.sequence_format import Sequence
from hand4dgs_ns.errors import Hand4DGSError

METADATA_KEY = "hand4dgs"
"""Key of :class:`HandSequencesMetadata` in ``DataparserOutputs.metadata``."""


@dataclass(frozen=True)
class SequenceTensors:
    """One whole sequence's cameras and hand data as torch tensors (all frames, whatever the split).

    Hand slots whose ``valid`` (or ``gt_valid``) flag is False are zeroed, so masked arithmetic
    on them stays finite; slot 0 is the left hand, slot 1 the right hand.
    """

    name: str
    """Sequence folder name."""
    root: Path
    """Sequence folder."""
    fps: float
    """Frame rate."""
    width: int
    """Frame width in pixels."""
    height: int
    """Frame height in pixels."""
    image_paths: tuple[Path, ...]
    """Every frame of the sequence."""
    K: Float[Tensor, "F 3 3"]
    """Pinhole intrinsics in pixels."""
    c2w: Float[Tensor, "F 4 4"]
    """Camera-to-world, OpenCV axes, metres (the dataset's own world frame)."""
    bbox: Float[Tensor, "F 2 4"]
    """Hand boxes, xyxy pixels."""
    valid: Bool[Tensor, "F 2"]
    """Hand present and usable."""
    pseudo_joints: Float[Tensor, "F 2 21 3"]
    """Pseudo-label joints, world frame, OpenPose order."""
    pseudo_verts: Float[Tensor, "F 2 V 3"] | None
    """Pseudo-label vertices in the hand template's topology, world frame, or None."""
    gt_joints: Float[Tensor, "F 2 21 3"] | None
    """Ground-truth joints for evaluation only, world frame, or None."""
    gt_valid: Bool[Tensor, "F 2"] | None
    """Which ground-truth hands are annotated, or None."""
    mask_paths: tuple[Path, ...] | None
    """Hand masks (uint8 PNG: 0 background, 1 left, 2 right) for every frame, or None."""

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return int(self.valid.shape[0])

    @classmethod
    def from_sequence(cls, sequence: Sequence) -> SequenceTensors:
        """Converts a validated :class:`Sequence` (numpy) to tensors."""
        hands = sequence.hands

        def masked(array: np.ndarray | None, valid: np.ndarray) -> Tensor | None:
            if array is None:
                return None
            keep = valid.reshape(valid.shape + (1,) * (array.ndim - valid.ndim))
            return torch.from_numpy(np.where(keep, array, 0.0).astype(np.float32))

        gt_valid = hands.gt_valid
        return cls(
            name=sequence.name,
            root=sequence.root,
            fps=sequence.cameras.fps,
            width=sequence.cameras.width,
            height=sequence.cameras.height,
            image_paths=tuple(sequence.image_paths),
            K=torch.from_numpy(sequence.cameras.K.astype(np.float32)),
            c2w=torch.from_numpy(sequence.cameras.c2w.astype(np.float32)),
            bbox=masked(hands.bbox, hands.valid),
            valid=torch.from_numpy(hands.valid.copy()),
            pseudo_joints=masked(hands.pseudo_joints, hands.valid),
            pseudo_verts=masked(hands.pseudo_verts, hands.valid),
            gt_joints=None if gt_valid is None else masked(hands.gt_joints, gt_valid),
            gt_valid=None if gt_valid is None else torch.from_numpy(gt_valid.copy()),
            mask_paths=None if sequence.mask_paths is None else tuple(sequence.mask_paths),
        )


@dataclass(frozen=True)
class NovelView:
    """An extra static camera of one sequence, for novel-view evaluation."""

    sequence_index: int
    """Index into :attr:`HandSequencesMetadata.sequences`."""
    name: str
    """The view's folder name under ``views/``."""
    image_filenames: tuple[Path, ...]
    """One frame per frame of the sequence, aligned by index."""
    cameras: Cameras
    """nerfstudio cameras (OpenGL axes) with the same ``times`` and ``metadata`` as training cameras."""
    mask_filenames: Optional[tuple[Path, ...]] = None
    """The view's hand masks (0/1/2 labels), aligned with its frames, if it has them."""


@dataclass(frozen=True)
class HandSequencesMetadata:
    """Everything hand-specific a dataparser split gives: all sequences plus this split's image indices."""

    sequences: tuple[SequenceTensors, ...]
    """Every sequence found (training and held out), in ``sequence_index`` order."""
    sequence_index: Int[Tensor, "N"]
    """For each image of this split, the sequence it comes from."""
    frame_index: Int[Tensor, "N"]
    """For each image of this split, its frame in that sequence."""
    mask_filenames: tuple[Path | None, ...]
    """For each image of this split, its hand mask (0/1/2 labels) or None."""
    views: tuple[NovelView, ...]
    """The sequences' extra static cameras."""

    def __deepcopy__(self, memo: dict[int, Any]) -> HandSequencesMetadata:
        # nerfstudio deep-copies the metadata dict into every dataset; this read-only data
        # (pseudo vertices of long videos can be large) is shared instead.
        return self


def hand_metadata(metadata: Mapping[str, Any]) -> HandSequencesMetadata:
    """The :class:`HandSequencesMetadata` inside a dataparser's or dataset's ``metadata`` dict."""
    value = metadata.get(METADATA_KEY)
    if not isinstance(value, HandSequencesMetadata):
        raise Hand4DGSError(
            "The dataset has no hand data (metadata key 'hand4dgs'); train on a hand dataset such as "
            "the hand4dgs-sequence dataparser."
        )
    return value
