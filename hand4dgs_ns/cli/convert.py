"""``hand4dgs convert h2o|arctic SRC OUT``: a public dataset written out in the project's sequence format.

The converted folders train without the dataset, the MANO files or the HaMeR files:
``ns-train hand4dgs --data OUT``.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.data.sequence_format import RGB_DIR
from hand4dgs_ns.datasets.base import DatasetName
from hand4dgs_ns.datasets.convert import convert_dataset
from hand4dgs_ns.datasets.detect import DatasetOptions, dataset_options_for
from hand4dgs_ns.errors import Hand4DGSError

_H2OFlags = dataset_options_for("h2o", "_H2OFlags", __name__)
"""The options ``convert h2o`` shows (the ARCTIC ones hidden)."""
_ArcticFlags = dataset_options_for("arctic", "_ArcticFlags", __name__)
"""The options ``convert arctic`` shows (the H2O ones hidden)."""


@dataclass(frozen=True)
class _ConvertArgs:
    src: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SRC")]]
    """The dataset folder (the dataset root, or any level below it down to one video)."""
    out: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Folder to hold one sequence folder per video (created when missing)."""
    overwrite: bool = False
    """Replace sequence folders of the same names in OUT."""

    def _convert(self, kind: DatasetName, options: DatasetOptions) -> None:
        started = time.perf_counter()
        written = convert_dataset(self.src, self.out, options, overwrite=self.overwrite, dataset=kind)
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
        # hand4dgs's heavier silhouette loss is for masks that follow the frames (docs/benchmarks.md).
        unrefined = [] if options.refine_masks else ["--pipeline.model.silhouette-loss-weight", "1"]
        command = shlex.join(["ns-train", "hand4dgs", "--data", str(self.out), *unrefined])
        console.print(f"  {command}", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class ConvertH2O(_ConvertArgs):
    """Convert H2O videos (egocentric cam4; static cam0-3 as views) with their HaMeR pseudo-labels."""

    dataset: tyro.conf.OmitArgPrefixes[_H2OFlags] = field(default_factory=_H2OFlags)
    """How to read the videos (MANO folder, HaMeR root, split, boxes)."""

    def main(self) -> None:
        """Converts and prints where the sequences went and how to train on them."""
        self._convert("h2o", self.dataset)


@dataclass(frozen=True)
class ConvertArctic(_ConvertArgs):
    """Convert ARCTIC videos (egocentric view 0, undistorted; views 1-8 as views) with their HaMeR pseudo-labels."""

    dataset: tyro.conf.OmitArgPrefixes[_ArcticFlags] = field(default_factory=_ArcticFlags)
    """How to read the videos (MANO folder, HaMeR root, split, boxes, subjects, sequences, crops, trim)."""

    def main(self) -> None:
        """Converts and prints where the sequences went and how to train on them."""
        if self.dataset.arctic_trim < 0:
            raise Hand4DGSError(
                f"--arctic-trim is {self.dataset.arctic_trim}; pass the number of annotated frames to drop at each end "
                "(0 or more)."
            )
        self._convert("arctic", self.dataset)


Convert = Union[
    Annotated[ConvertH2O, tyro.conf.subcommand("h2o", description=ConvertH2O.__doc__)],
    Annotated[ConvertArctic, tyro.conf.subcommand("arctic", description=ConvertArctic.__doc__)],
]
"""``hand4dgs convert``: one nested subcommand per dataset, so that each shows only its own options."""
