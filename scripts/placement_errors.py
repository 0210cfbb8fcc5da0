"""Where a generalised run's held-out MPJPE comes from: hand size, depth, or lateral position.

Reads a set (a ``hand4dgs synth-set`` folder: ``splits.json`` and videos with ground truth) and
the ``hand4dgs infer`` output of every held-out video it lists (``<infer>/<video>/hands.npz``, the
folder names as in ``splits.json``). For each held-out video it prints the model's and the
pseudo-labels' MPJPE, RA-MPJPE, the wrist error split into depth (signed and absolute) and lateral
parts, predicted-to-true hand size, and the size-ambiguity floor: the MPJPE of a single-frame
predictor right in everything but the hand's size, which it takes as the training videos' typical
size (``hand4dgs_ns.eval.placement``).

    hand4dgs infer --load-config <run>/config.yml --data <set>/test_000 --output-dir <dir> --no-video
    (the same for every test video of splits.json)
    python scripts/placement_errors.py --data <set> --infer <dir> [--output placement.json]
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro
from rich.console import Console
from rich.table import Table

from hand4dgs_ns.data.sequence_format import read_sequence
from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
from hand4dgs_ns.dataparsers.splits import SPLIT_FILE, read_split_file
from hand4dgs_ns.errors import Hand4DGSError, file_error, os_error_sentence
from hand4dgs_ns.eval.placement import PlacementErrors, depth_error_spread_mm, hand_size, placement_errors, size_ambiguity_floor_mm


@dataclass(frozen=True)
class VideoPlacement:
    """One held-out video's figures (mm unless a ratio)."""

    model: PlacementErrors
    pseudo: PlacementErrors
    true_size_ratio: float
    """The video's true hand size over the training videos' typical size."""
    size_floor_mm: float
    depth_error_std_mm: float
    """The model's depth error along one hand's track: standard deviation (mean of the hands)."""
    depth_error_frame_to_frame_mm: float
    """The part of it that changes from one frame to the next."""


@dataclass(frozen=True)
class PlacementReport:
    data: Path
    """The set folder (holds splits.json and the videos, with ground-truth joints)."""
    infer: Path
    """A ``hand4dgs infer`` output folder holding <video>/hands.npz for every held-out video."""
    output: Optional[Path] = None
    """Also write the figures as JSON here."""

    def main(self) -> None:
        if not (self.data / SPLIT_FILE).is_file():
            raise file_error(self.data / SPLIT_FILE, "does not exist", "pass a hand4dgs synth-set folder with --data")
        train, test = read_split_file(self.data)
        predictions = {name: _read_prediction(self.infer / name / "hands.npz", self.data / name) for name in test}
        typical = float(np.mean([_median_size(SequenceTensors.from_sequence(read_sequence(self.data / name))) for name in train]))
        videos = {name: _video_placement(SequenceTensors.from_sequence(read_sequence(self.data / name)), *predictions[name], typical) for name in test}
        _print(videos, typical)
        if self.output is not None:
            rows = {name: asdict(video) for name, video in videos.items()}
            try:  # NaN (a video without a usable track) is written as null: JSON has no NaN
                self.output.write_text(json.dumps(_nan_to_none({"typical_size_m": typical, "videos": rows}), indent=2))
            except OSError as err:
                raise os_error_sentence(err) or file_error(self.output, f"cannot be written ({err.strerror})", "choose another --output") from None


def _read_prediction(file: Path, video: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The joints (world frame) and validity ``hand4dgs infer`` wrote for ``video``."""
    if not file.is_file():
        raise file_error(file, "does not exist", f"run hand4dgs infer on {video} with --output-dir {file.parent.parent}")
    arrays = np.load(file)
    if "joints_world" not in arrays.files or "valid" not in arrays.files:
        raise file_error(file, "holds no joints_world and valid arrays", "pass --infer the folder hand4dgs infer wrote")
    return torch.from_numpy(arrays["joints_world"]).double(), torch.from_numpy(arrays["valid"]).bool()


def _median_size(video: SequenceTensors, gt: bool = False) -> float:
    """The video's median hand size: of the pseudo-labels (what a network trains on) unless ``gt``."""
    joints, valid = (video.gt_joints, video.gt_valid & video.valid) if gt else (video.pseudo_joints, video.valid)
    return float(hand_size(joints.double())[valid].median())


def _video_placement(video: SequenceTensors, joints: torch.Tensor, predicted: torch.Tensor, typical: float) -> VideoPlacement:
    if video.gt_joints is None:
        raise file_error(video.root / "hands.npz", "has no gt_joints", "use a set with ground truth (hand4dgs synth-set writes it)")
    if joints.shape[:2] != video.valid.shape:
        raise file_error(
            video.root, f"has {video.num_frames} frames, its prediction {joints.shape[0]}", "run hand4dgs infer on this video again"
        )
    gt = video.gt_joints.double()
    valid = video.gt_valid & video.valid
    centres = video.c2w[:, None, :3, 3].double().expand(-1, 2, -1)
    model_valid = valid & predicted
    spread = np.array([depth_error_spread_mm(joints[:, h], gt[:, h], centres[:, h], model_valid[:, h]) for h in range(2)])
    tracked = np.isfinite(spread).all(axis=1)  # hands with a long enough track
    spread = spread[tracked].mean(axis=0) if tracked.any() else np.full(2, np.nan)
    return VideoPlacement(
        model=placement_errors(joints, gt, centres, model_valid),
        pseudo=placement_errors(video.pseudo_joints.double(), gt, centres, valid),
        true_size_ratio=_median_size(video, gt=True) / typical,
        size_floor_mm=size_ambiguity_floor_mm(gt, centres, typical, valid),
        depth_error_std_mm=float(spread[0]),
        depth_error_frame_to_frame_mm=float(spread[1]),
    )


def _print(videos: dict[str, VideoPlacement], typical: float) -> None:
    table = Table(title=f"Held-out placement (typical training hand size {typical * 1000:.0f} mm of bone)")
    for column in ("video", "", "MPJPE", "RA-MPJPE", "wrist", "depth", "|depth|", "lateral", "size", "true size", "floor"):
        table.add_column(column, justify="right")

    def cells(e: PlacementErrors) -> list[str]:
        return [f"{e.mpjpe_mm:.1f}", f"{e.ra_mpjpe_mm:.1f}", f"{e.wrist_mm:.1f}", f"{e.depth_mm:+.1f}", f"{e.abs_depth_mm:.1f}", f"{e.lateral_mm:.1f}", f"{e.size_ratio:.3f}"]

    rows = list(videos.items()) + [("mean", _mean(list(videos.values())))]
    for name, v in rows:
        table.add_row(name, "model", *cells(v.model), f"{v.true_size_ratio:.3f}", f"{v.size_floor_mm:.1f}")
        table.add_row("", "pseudo", *cells(v.pseudo), "", "")
    mean = rows[-1][1]
    console = Console(width=max(Console().width, 110))  # the table's 11 columns need more than 80 characters
    console.print(table)
    console.print(
        f"The model's depth error along one hand's track: standard deviation {mean.depth_error_std_mm:.1f} mm, "
        f"of which {mean.depth_error_frame_to_frame_mm:.1f} mm changes from frame to frame."
    )
    console.print(
        "mm. depth: predicted minus true distance of the wrist from the camera (negative: too near); lateral: the wrist "
        "error across the camera ray; size: predicted over true hand size; true size: over the training videos' typical "
        "size; floor: MPJPE of a single-frame predictor right in everything but the size, which it takes as typical."
    )


def _mean(videos: list[VideoPlacement]) -> VideoPlacement:
    """The mean of every figure over the videos (NaN figures left out)."""

    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan

    def mean_errors(errors: list[PlacementErrors]) -> PlacementErrors:
        return PlacementErrors(**{key: mean([asdict(e)[key] for e in errors]) for key in asdict(errors[0])})

    fields = {key: mean([getattr(v, key) for v in videos]) for key in ("true_size_ratio", "size_floor_mm", "depth_error_std_mm", "depth_error_frame_to_frame_mm")}
    return VideoPlacement(model=mean_errors([v.model for v in videos]), pseudo=mean_errors([v.pseudo for v in videos]), **fields)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


if __name__ == "__main__":
    try:
        tyro.cli(PlacementReport).main()
    except Hand4DGSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1)
