"""``hand4dgs synth-set``: a synthetic benchmark set (train and test videos, splits.json) for a generalised model."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.dataparsers.splits import SPLIT_FILE
from hand4dgs_ns.synthetic.clip import SynthConfig
from hand4dgs_ns.synthetic.clip_set import synthesize_clip_set


@dataclass(frozen=True)
class SynthSet:
    """Render N train and M test synthetic egocentric two-hand videos, each with its own subject,
    room, lighting, motion and head path (seeded from --seed and the video's index), into
    OUT/train_000 ..., OUT/test_000 ..., and name them in OUT/splits.json, written last."""

    out: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Folder of the set (must be missing or empty unless --overwrite)."""
    train: int = 16
    """Number of train videos."""
    test: int = 4
    """Number of test videos."""
    # name="" drops the "config." prefix from the clip's flags but keeps nested ones (--appearance.*),
    # which OmitArgPrefixes would strip too.
    config: Annotated[SynthConfig, tyro.conf.arg(name="")] = field(default_factory=SynthConfig)
    """Settings of every video; each video's seed is derived from --seed, its split and its index."""
    test_frames: Optional[int] = None
    """Frames of each test video (default: --frames). Many short training videos and full-length
    held-out ones: more training subjects help a generalised model more than longer videos do."""
    workers: int = 1
    """Videos synthesised at once, each in a process of its own (a video keeps about two cores busy)."""
    overwrite: bool = False
    """Replace the video folders and the split file of an existing set in OUT."""

    def main(self) -> None:
        """Synthesises the set and prints what it wrote, how long it took and how to train on it."""
        result = synthesize_clip_set(
            self.out, self.train, self.test, self.config, self.workers, self.overwrite, test_frames=self.test_frames
        )
        config = self.config
        mpjpe = sum(clip.pseudo_mpjpe_mm for clip in result.clips.values()) / len(result.clips)
        Console().print(
            f"Wrote {len(result.clips)} videos ({self.train} train, {self.test} test; {result.num_frames} frames in all "
            f"at {config.width}x{config.height}) to [bold]{result.root}[/] in {result.seconds:.1f} s "
            f"({result.num_frames / result.seconds:.1f} frames/s); mean pseudo-label MPJPE {mpjpe:.1f} mm; "
            f"splits in {result.root / SPLIT_FILE}.\n"
            f"Train the generalised model: ns-train hand4dgs-generalized --data {shlex.quote(str(result.root))}",
            highlight=False,
            soft_wrap=True,
        )
