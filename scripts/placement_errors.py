"""Where a generalised run's held-out MPJPE comes from: hand size, depth, or lateral position.

Reads a set (``hand4dgs synth-set`` folder with ``splits.json``, ground truth in each video) and a
``hand4dgs infer`` output folder of its held-out videos. For each held-out video it prints the
model's and the pseudo-labels' MPJPE, RA-MPJPE, wrist error split into depth (signed and absolute)
and lateral parts, and predicted-to-true hand size; and the size-ambiguity floor: the MPJPE of a
predictor right in everything but the hand's size, which it takes as the training videos' typical
size (``hand4dgs_ns.eval.placement``).

    hand4dgs infer --load-config <run>/config.yml --data <set>/test_000 ... --output-dir <dir> --no-video
    python scripts/placement_errors.py --set <set> --infer <dir> [--output placement.json]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro
from rich.console import Console
from rich.table import Table

from hand4dgs_ns.data.sequence_format import SequenceHands, read_sequence
from hand4dgs_ns.dataparsers.splits import read_split_file
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.eval.placement import depth_error_spread_mm, hand_size, placement_errors, size_ambiguity_floor_mm


@dataclass
class PlacementReport:
    set: Path
    """The set folder (holds splits.json and the videos, with ground-truth joints)."""
    infer: Path
    """A ``hand4dgs infer`` output folder holding <video>/hands.npz for the held-out videos."""
    output: Optional[Path] = None
    """Also write the figures as JSON here."""

    def main(self) -> None:
        train, test = read_split_file(self.set)
        typical = float(np.mean([_median_size(read_sequence(self.set / name).hands) for name in train]))
        rows = {}
        for name in test:
            hands = read_sequence(self.set / name).hands
            if hands.gt_joints is None:
                raise file_error(self.set / name / "hands.npz", "has no gt_joints", "use a set with ground truth (hand4dgs synth-set writes it)")
            pred_file = self.infer / name / "hands.npz"
            if not pred_file.is_file():
                raise file_error(pred_file, "does not exist", f"run hand4dgs infer on {self.set / name} with --output-dir {self.infer}")
            pred = np.load(pred_file)
            gt = torch.from_numpy(hands.gt_joints).double()
            valid = torch.from_numpy(hands.valid & (hands.gt_valid if hands.gt_valid is not None else True))
            centres = torch.from_numpy(read_sequence(self.set / name).cameras.c2w[:, None, :3, 3]).double().expand(-1, 2, -1)
            model_valid = valid & torch.from_numpy(pred["valid"])
            model_joints = torch.from_numpy(pred["joints_world"]).double()
            spread = np.array([depth_error_spread_mm(model_joints[:, h], gt[:, h], centres[:, h], model_valid[:, h]) for h in range(2)])
            tracked = np.isfinite(spread).all(axis=1)  # hands with a track of three or more valid frames
            spread = spread[tracked].mean(axis=0) if tracked.any() else np.full(2, np.nan)
            rows[name] = {
                "model": asdict(placement_errors(model_joints, gt, centres, model_valid)),
                "depth_error_std_mm": float(spread[0]),
                "depth_error_frame_to_frame_mm": float(spread[1]),
                "pseudo": asdict(placement_errors(torch.from_numpy(hands.pseudo_joints).double(), gt, centres, valid)),
                "true_size_ratio": float(_median_size(hands, gt=True) / typical),
                "size_floor_mm": size_ambiguity_floor_mm(gt, centres, typical, valid),
            }
        _print(rows, typical)
        if self.output is not None:
            self.output.write_text(json.dumps({"typical_size_m": typical, "videos": rows}, indent=2))


def _median_size(hands: SequenceHands, gt: bool = False) -> float:
    """The video's median hand size: of the pseudo-labels (what a network trains on) unless ``gt``."""
    joints = hands.gt_joints if gt else hands.pseudo_joints
    return float(np.median(hand_size(torch.from_numpy(joints).double()).numpy()[hands.valid]))


def _print(rows: dict, typical: float) -> None:
    table = Table(title=f"Held-out placement (typical training hand size {typical * 1000:.0f} mm of bone)")
    for column in ("video", "", "MPJPE", "RA-MPJPE", "wrist", "depth", "|depth|", "lateral", "size", "true size", "floor"):
        table.add_column(column, justify="right")
    names = list(rows)
    for name in names + ["mean"]:
        for who in ("model", "pseudo"):
            r = _mean([rows[n][who] for n in names]) if name == "mean" else rows[name][who]
            extra = ("", "")
            if who == "model":
                src = [rows[n] for n in names] if name == "mean" else [rows[name]]
                extra = (f"{np.mean([s['true_size_ratio'] for s in src]):.3f}", f"{np.mean([s['size_floor_mm'] for s in src]):.1f}")
            table.add_row(
                name if who == "model" else "", who, f"{r['mpjpe_mm']:.1f}", f"{r['ra_mpjpe_mm']:.1f}", f"{r['wrist_mm']:.1f}",
                f"{r['depth_mm']:+.1f}", f"{r['abs_depth_mm']:.1f}", f"{r['lateral_mm']:.1f}", f"{r['size_ratio']:.3f}", *extra,
            )
    console = Console(width=max(Console().width, 110))  # the table's 11 columns need more than 80 characters
    console.print(table)
    std, step = (np.nanmean([rows[n][k] for n in names]) for k in ("depth_error_std_mm", "depth_error_frame_to_frame_mm"))
    console.print(f"The model's depth error along one hand's track: standard deviation {std:.1f} mm, of which {step:.1f} mm changes from frame to frame.")
    console.print(
        "mm. depth: predicted minus true distance of the wrist from the camera (negative: too near); lateral: the wrist "
        "error across the camera ray; size: predicted over true hand size; true size: over the training videos' typical "
        "size; floor: MPJPE of a predictor right in everything but the size, which it takes as typical."
    )


def _mean(items: list[dict]) -> dict:
    return {key: float(np.mean([item[key] for item in items])) for key in items[0]}


if __name__ == "__main__":
    try:
        tyro.cli(PlacementReport).main()
    except Hand4DGSError as exc:
        Console(stderr=True).print(f"[bold red]{exc}[/]")
        raise SystemExit(1)
