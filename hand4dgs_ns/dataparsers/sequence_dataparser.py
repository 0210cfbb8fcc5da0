"""nerfstudio dataparsers ``hand4dgs-sequence``, ``h2o`` and ``arctic``: hand videos in any supported layout.

``hand4dgs-sequence`` (the ``hand4dgs`` method's default) reads whatever ``--data`` holds, the
layout detected by :func:`~hand4dgs_ns.datasets.detect.detect_layout`: sequence folders in the
project's format v1 as they are, H2O and ARCTIC folders through their readers with the HaMeR
pseudo-labels attached (:func:`~hand4dgs_ns.datasets.detect.load_sequences`). ``h2o`` and
``arctic`` are the same parser restricted to that dataset and showing only its options.

Poses are used exactly as stored: no auto-orient, centring or scaling (unlike nerfstudio's own
dataparsers), because hand pseudo-labels, ground truth and metrics are in metres in the
dataset's own world frame; ``dataparser_transform`` stays the identity and the scale 1.

Hand masks are not given to nerfstudio as ``mask_filenames``: nerfstudio reads a mask as a
boolean "pixels to use" map (``get_image_mask_tensor_from_path`` calls ``.bool()``), which
would merge the left (1) and right (2) labels, make ray-based methods sample hand pixels only,
and requires a mask for every image of every sequence. The per-image mask paths travel in
:class:`~hand4dgs_ns.dataparsers.hand_metadata.HandSequencesMetadata` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Type

import numpy as np
import torch
import tyro
from jaxtyping import Int
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from hand4dgs_ns.data.sequence_format import SequenceCameras
from hand4dgs_ns.dataparsers.hand_metadata import (
    METADATA_KEY,
    HandSequencesMetadata,
    NovelView,
    SequenceTensors,
)
from hand4dgs_ns.dataparsers.splits import EvalMode, split_frames
from hand4dgs_ns.errors import file_error
from hand4dgs_ns.datasets.detect import (
    ArcticOptions,
    DatasetKind,
    DatasetOptions,
    H2OOptions,
    load_sequences,
)
from hand4dgs_ns.geometry.cameras import opencv_to_opengl_c2w


def nerfstudio_cameras(
    cameras: Mapping[int, SequenceCameras],
    sequence_index: Int[np.ndarray, "N"],
    frame_index: Int[np.ndarray, "N"],
) -> Cameras:
    """nerfstudio ``Cameras`` (OpenGL axes) for the frames ``(sequence_index[i], frame_index[i])``.

    Args:
        cameras: each sequence's cameras by sequence index.
        sequence_index: sequence of each image.
        frame_index: frame of each image in its sequence.

    ``times`` is the frame index normalised to [0, 1] over the whole sequence (0 for a
    one-frame sequence); ``metadata`` holds ``frame_index`` and ``sequence_index`` as (N, 1)
    long tensors, which nerfstudio indexes together with the cameras.
    """
    K, c2w, width, height, times = [], [], [], [], []
    for s, f in zip(sequence_index.tolist(), frame_index.tolist(), strict=True):
        sequence_cameras = cameras[s]
        K.append(sequence_cameras.K[f])
        c2w.append(sequence_cameras.c2w[f])
        width.append(sequence_cameras.width)
        height.append(sequence_cameras.height)
        times.append(f / max(sequence_cameras.num_frames - 1, 1))
    K_t = torch.from_numpy(np.stack(K).astype(np.float32))
    c2w_gl = opencv_to_opengl_c2w(torch.from_numpy(np.stack(c2w).astype(np.float32)))
    return Cameras(
        camera_to_worlds=c2w_gl[:, :3, :4],
        fx=K_t[:, 0, 0:1],
        fy=K_t[:, 1, 1:2],
        cx=K_t[:, 0, 2:3],
        cy=K_t[:, 1, 2:3],
        width=torch.tensor(width, dtype=torch.long)[:, None],
        height=torch.tensor(height, dtype=torch.long)[:, None],
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor(times, dtype=torch.float32)[:, None],
        metadata={
            "frame_index": torch.from_numpy(np.asarray(frame_index, dtype=np.int64))[:, None],
            "sequence_index": torch.from_numpy(np.asarray(sequence_index, dtype=np.int64))[:, None],
        },
    )


def hand_scene_box(sequences: tuple[SequenceTensors, ...], views: tuple[NovelView, ...], margin: float) -> SceneBox:
    """An axis-aligned box around every camera centre and every valid pseudo-label joint and vertex."""
    points = []
    for sequence in sequences:
        points.append(sequence.c2w[:, :3, 3])
        points.append(sequence.pseudo_joints[sequence.valid].reshape(-1, 3))
        if sequence.pseudo_verts is not None:
            points.append(sequence.pseudo_verts[sequence.valid].reshape(-1, 3))
    for view in views:
        points.append(view.cameras.camera_to_worlds[:, :3, 3])
    points_t = torch.cat(points)
    return SceneBox(aabb=torch.stack([points_t.min(dim=0).values - margin, points_t.max(dim=0).values + margin]))


@dataclass(frozen=True)
class _LoadedSequences:
    sequences: tuple[SequenceTensors, ...]
    cameras: dict[int, SequenceCameras]
    views: tuple[NovelView, ...]


@dataclass
class SequenceDataParserConfig(DataParserConfig):
    """Hand videos: sequence-format folders, H2O or ARCTIC (the layout of --data is detected).

    Dataset videos are named as their readers name them (H2O ``subject4_h1_0``, ARCTIC
    ``s05_box_grab_01``); those are the names eval-sequences takes. To hold out the paper's test
    videos in one run, read e.g. all of ``h2o/`` (split 'all') with eval-mode 'sequences' and
    eval-sequences ``subject4_h1_0 subject4_h1_1 ...``; split 'paper-train' / 'paper-test'
    instead reads only that part of the paper's split.
    """

    _target: Type = field(default_factory=lambda: SequenceDataParser)
    layout: ClassVar[Optional[DatasetKind]] = None
    """The layout --data must have; None detects it."""
    data: Path = Path()
    """A sequence folder or a folder of them, or an H2O or ARCTIC folder at any level of its layout."""
    eval_mode: EvalMode = "interval"
    """How to hold out eval images: 'interval' every n-th frame of each sequence, 'sequences' the
    whole sequences named in eval-sequences, 'split-file' the test videos of --data's splits.json
    (training on its train videos), 'all' every image in both splits. On a dataset folder
    read with split 'all' (e.g. h2o/), 'sequences' holds out the paper's test videos when
    eval-sequences names them (subject4_h1_0 subject4_h1_1 ...)."""
    eval_interval: int = 8
    """n for eval-mode 'interval': frames 0, n, 2n, ... of every sequence are held out."""
    eval_sequences: tuple[str, ...] = ()
    """Sequence names held out for eval-mode 'sequences' (the folder name, or for H2O and ARCTIC
    the video name such as subject4_h1_0 or s05_box_grab_01)."""
    check_frames: bool = False
    """Decode every frame and mask when loading, to find corrupt files before training starts."""
    scene_box_margin: float = 0.1
    """Metres added on every side of the box around the cameras and hands."""
    dataset: tyro.conf.OmitArgPrefixes[DatasetOptions] = field(default_factory=DatasetOptions)
    """H2O and ARCTIC only: how to read a dataset folder. split picks the videos to read, unlike
    eval-mode, which splits the videos read."""


@dataclass
class H2ODataParserConfig(SequenceDataParserConfig):
    """H2O videos (egocentric cam4, static cam0-3 as novel views) with their HaMeR pseudo-labels."""

    layout: ClassVar[Optional[DatasetKind]] = "h2o"
    data: Path = Path()
    """An H2O folder: the root, a subject, an action or a sequence folder, or a sequence's cam4."""
    dataset: tyro.conf.OmitArgPrefixes[H2OOptions] = field(default_factory=H2OOptions)


@dataclass
class ArcticDataParserConfig(SequenceDataParserConfig):
    """ARCTIC videos (egocentric view 0, static views 1-8 as novel views) with their HaMeR pseudo-labels."""

    layout: ClassVar[Optional[DatasetKind]] = "arctic"
    data: Path = Path()
    """An ARCTIC folder: the root, data/arctic_data/data, raw_seqs/ or images/, a subject or a sequence folder."""
    dataset: tyro.conf.OmitArgPrefixes[ArcticOptions] = field(default_factory=ArcticOptions)


@dataclass
class SequenceDataParser(DataParser):
    """Reads hand videos (sequence folders, H2O or ARCTIC) into nerfstudio cameras plus the hand data of every video."""

    config: SequenceDataParserConfig
    includes_time: bool = True

    def __init__(self, config: SequenceDataParserConfig):
        super().__init__(config=config)
        self._loaded: _LoadedSequences | None = None

    def _load(self) -> _LoadedSequences:
        # Both splits come from the same parser: read and validate the folders once.
        if self._loaded is None:
            read = load_sequences(
                self.config.data,
                self.config.dataset,
                check_frames=self.config.check_frames,
                kind=self.config.layout,
            )
            for sequence in read:
                if not np.asarray(sequence.hands.valid).any():
                    where = sequence.root / "hands.npz" if (sequence.root / "hands.npz").is_file() else sequence.root
                    raise file_error(
                        where, "marks no hand valid in any frame, so there is nothing to train on",
                        "set valid where a hand is visible (hand4dgs preprocess or a hand detector gives boxes) or leave this video out",
                    )
            views = tuple(
                NovelView(
                    sequence_index=s,
                    name=view.name,
                    image_filenames=tuple(view.image_paths),
                    mask_filenames=None if view.mask_paths is None else tuple(view.mask_paths),
                    cameras=nerfstudio_cameras(
                        {s: view.cameras}, np.full(view.cameras.num_frames, s), np.arange(view.cameras.num_frames)
                    ),
                )
                for s, sequence in enumerate(read)
                for view in sequence.views.values()
            )
            self._loaded = _LoadedSequences(
                sequences=tuple(SequenceTensors.from_sequence(sequence) for sequence in read),
                cameras={s: sequence.cameras for s, sequence in enumerate(read)},
                views=views,
            )
        return self._loaded

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        loaded = self._load()
        sequences = loaded.sequences
        sequence_index, frame_index = split_frames(
            names=[sequence.name for sequence in sequences],
            num_frames=[sequence.num_frames for sequence in sequences],
            split=split,
            eval_mode=self.config.eval_mode,
            eval_interval=self.config.eval_interval,
            eval_sequences=tuple(self.config.eval_sequences),
            data=self.config.data,
        )
        pairs = list(zip(sequence_index.tolist(), frame_index.tolist(), strict=True))
        image_filenames = [sequences[s].image_paths[f] for s, f in pairs]
        mask_filenames = tuple(
            None if sequences[s].mask_paths is None else sequences[s].mask_paths[f] for s, f in pairs
        )
        metadata = HandSequencesMetadata(
            sequences=sequences,
            sequence_index=torch.from_numpy(sequence_index),
            frame_index=torch.from_numpy(frame_index),
            mask_filenames=mask_filenames,
            views=loaded.views,
        )
        # dataparser_transform and dataparser_scale keep their identity defaults: no auto-orient or
        # auto-scale, so hand labels and metrics stay in metres in the dataset's world frame.
        return DataparserOutputs(
            image_filenames=image_filenames,
            cameras=nerfstudio_cameras(loaded.cameras, sequence_index, frame_index),
            scene_box=hand_scene_box(sequences, loaded.views, self.config.scene_box_margin),
            mask_filenames=None,
            metadata={METADATA_KEY: metadata},
        )
