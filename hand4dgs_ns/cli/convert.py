"""``hand4dgs convert h2o|arctic SRC OUT``: a public dataset written out in the project's sequence format.

The converted folders train without the dataset, the MANO files or the HaMeR files:
``ns-train hand4dgs --data OUT``.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.data.sequence_format import RGB_DIR
from hand4dgs_ns.datasets.convert import convert_dataset
from hand4dgs_ns.datasets.detect import DatasetOptions
from hand4dgs_ns.errors import Hand4DGSError

Split = Literal["all", "paper-train", "paper-test"]


@dataclass(frozen=True)
class _ConvertArgs:
    src: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SRC")]]
    """The dataset folder (the dataset root, or any level below it down to one video)."""
    out: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Folder to hold one sequence folder per video (created when missing)."""
    mano_dir: Optional[Path] = None
    """Folder with MANO_LEFT.pkl and MANO_RIGHT.pkl; None reads $HAND4DGS_MANO_DIR."""
    hamer_root: Optional[Path] = None
    """Folder of the per-video HaMeR pseudo-label folders; None: beside each video, where
    `hand4dgs preprocess` puts them by default."""
    split: Split = "all"
    """Which videos: all, or the train or test part of the paper's split."""
    box_margin: float = 0.2
    """Growth of the hand boxes around the projected ground-truth joints, per side, as a share of their size."""
    cache_dir: Optional[Path] = None
    """Where derived files (hand masks, undistorted ARCTIC frames) are cached; None: the package's cache."""
    overwrite: bool = False
    """Replace sequence folders of the same names in OUT."""

    def _options(self, **dataset_specific) -> DatasetOptions:
        return DatasetOptions(
            mano_dir=self.mano_dir,
            hamer_root=self.hamer_root,
            split=self.split,
            box_margin=self.box_margin,
            cache_dir=self.cache_dir,
            **dataset_specific,
        )

    def _convert(self, dataset: Literal["h2o", "arctic"], options: DatasetOptions) -> None:
        started = time.perf_counter()
        written = convert_dataset(self.src, self.out, options, overwrite=self.overwrite, dataset=dataset)
        frames = sum(len(list((path / RGB_DIR).iterdir())) for path in written)
        console = Console()
        console.print(
            f"Wrote {len(written)} sequence folder{'s' if len(written) != 1 else ''} ({frames} frames) to "
            f"[bold]{self.out}[/] in {time.perf_counter() - started:.1f} s: "
            + ", ".join(path.name for path in written)
            + ".",
            highlight=False,
            soft_wrap=True,
        )
        console.print("Train on them with:", highlight=False)
        command = shlex.join(["ns-train", "hand4dgs", "--data", str(self.out)])
        console.print(f"  {command}", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class ConvertH2O(_ConvertArgs):
    """Convert H2O videos (egocentric cam4; static cam0-3 as views) with their HaMeR pseudo-labels."""

    detections: Optional[Path] = None
    """Detected hand boxes to use instead of boxes around the ground truth, for a SRC of one
    video (an .npz as hand4dgs_ns/datasets/h2o.py describes)."""

    def main(self) -> None:
        """Converts and prints where the sequences went and how to train on them."""
        self._convert("h2o", self._options(h2o_detections=self.detections))


@dataclass(frozen=True)
class ConvertArctic(_ConvertArgs):
    """Convert ARCTIC videos (egocentric view 0, undistorted; views 1-8 as views) with their HaMeR pseudo-labels."""

    subjects: tuple[str, ...] = ()
    """Only these subjects, e.g. s01 s08; none given: all."""
    sequences: tuple[str, ...] = ()
    """Only these sequences, e.g. box_grab_01 or s05/box_grab_01; none given: all."""
    cropped: bool = False
    """Read cropped_images (840x600) instead of the full 2800x2000 images."""
    trim: int = 100
    """Annotated frames dropped at each end of a video (the paper drops 100)."""

    def main(self) -> None:
        """Converts and prints where the sequences went and how to train on them."""
        if self.trim < 0:
            raise Hand4DGSError(
                f"--trim is {self.trim}; pass the number of annotated frames to drop at each end (0 or more)."
            )
        options = self._options(
            arctic_subjects=self.subjects,
            arctic_sequences=self.sequences,
            arctic_cropped=self.cropped,
            arctic_trim=self.trim,
        )
        self._convert("arctic", options)


Convert = Union[
    Annotated[ConvertH2O, tyro.conf.subcommand("h2o", description=ConvertH2O.__doc__)],
    Annotated[ConvertArctic, tyro.conf.subcommand("arctic", description=ConvertArctic.__doc__)],
]
"""``hand4dgs convert``: one nested subcommand per dataset, so that each shows only its own options."""
