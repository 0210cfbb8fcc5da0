"""What every public-dataset reader returns: one egocentric video before pseudo-labels are attached.

A dataset reader (H2O, ARCTIC) turns its own layout into :class:`DatasetSequence` objects:
frames, cameras, boxes and ground truth, all in the project's conventions (metres, OpenCV axes,
world frame, OpenPose joint order, slot 0 = left hand). HaMeR pseudo-labels are attached
afterwards (:mod:`hand4dgs_ns.datasets.hamer`), which turns a :class:`DatasetSequence` into the
:class:`~hand4dgs_ns.data.sequence_format.Sequence` that the dataparser, the converter and
every later tool read. Preprocessing needs the sequence *before* pseudo-labels exist (to crop
the frames for HaMeR), which is why the two steps are separate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Bool, Float

from hand4dgs_ns.data.sequence_format import SequenceCameras, SequenceView
from hand4dgs_ns.datasets.objects import ObjectTrack

DatasetName = Literal["h2o", "arctic"]


@dataclass(frozen=True)
class DatasetSequence:
    """One egocentric video of a public dataset, with ground truth and boxes, without pseudo-labels."""

    dataset: DatasetName
    """Which dataset the video comes from."""
    name: str
    """Unique, filesystem-safe name, e.g. ``subject4_h1_0`` (H2O) or ``s05_box_grab_01`` (ARCTIC)."""
    root: Path
    """The dataset folder the video was read from (H2O: the ``cam4`` folder; ARCTIC: the
    ``raw_seqs/sNN/<seq>.mano.npy`` file's sequence)."""
    image_paths: list[Path]
    """The frames as the model reads them (ARCTIC: undistorted copies in the cache)."""
    frame_ids: list[str]
    """The dataset's own name of each frame (file stem, e.g. ``000123``); names the per-frame
    HaMeR file ``<hamer_dir>/<frame_id>.npz``."""
    cameras: SequenceCameras
    """Per-frame pinhole cameras of the frames in ``image_paths`` (undistorted space)."""
    bbox: Float[np.ndarray, "F 2 4"]
    """Hand boxes, xyxy pixels of ``image_paths``; slot 0 left, 1 right."""
    box_valid: Bool[np.ndarray, "F 2"]
    """Which boxes are usable (hand annotated and inside the image)."""
    gt_joints: Float[np.ndarray, "F 2 21 3"]
    """Ground-truth joints, world frame, metres, OpenPose order, reproduced exactly as the
    dataset made them (evaluation only)."""
    gt_valid: Bool[np.ndarray, "F 2"]
    """Which ground-truth hands are annotated."""
    views: dict[str, SequenceView]
    """Static cameras filming the same frames, for novel-view evaluation only."""
    hamer_dir: Path
    """Folder of this video's per-frame HaMeR files (docs/formats.md section 5)."""
    objects: ObjectTrack | None = None
    """The held object, drawn into the hand masks as an occluder (None: the dataset files give none)."""

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return len(self.image_paths)
