"""``hand4dgs preprocess DATA --hamer-checkpoint FILE``: HaMeR pseudo-labels (and ViT-H features) for a dataset.

Runs HaMeR on the hand boxes of every video of an H2O or ARCTIC folder and writes one
pseudo-label file per frame (docs/formats.md section 5) where training and ``hand4dgs convert`` look
for them. Needs the ``hamer`` package, which is not a dependency of this project.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.datasets.detect import DatasetOptions, detect_layout, read_dataset_sequences
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.preprocess.hamer_runner import HAMER_URL, preprocess_sequence


@dataclass(frozen=True)
class Preprocess:
    """Run HaMeR on every video of an H2O or ARCTIC folder: per-frame pseudo-labels and ViT-H features."""

    data: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="DATA")]]
    """The H2O or ARCTIC folder (the dataset root, or any level below it down to one video)."""
    hamer_checkpoint: Path
    """HaMeR's hamer.ckpt, in the folder layout of HaMeR's download (model_config.yaml two folders above)."""
    device: Optional[str] = None
    """Where HaMeR runs, e.g. cuda, cuda:1 or cpu; None: cuda when available."""
    batch_size: int = 32
    """Hand crops per forward pass."""
    features: bool = True
    """Also cache the ViT-H features of the hand crops for training (--no-features: pseudo-labels only)."""
    dataset: tyro.conf.OmitArgPrefixes[DatasetOptions] = field(default_factory=DatasetOptions)
    """How to read the dataset (the same options as training's dataparser: MANO folder, HaMeR root,
    split, boxes, ARCTIC subjects, sequences, crops and trim)."""

    def main(self) -> None:
        """Runs HaMeR on every video and prints where the files went."""
        checkpoint = Path(self.hamer_checkpoint)
        # Checked before the dataset is read, which for ARCTIC means undistorting every frame.
        if not checkpoint.is_file():
            raise Hand4DGSError(
                f"HaMeR checkpoint {checkpoint} does not exist: download HaMeR's checkpoint ({HAMER_URL}) "
                "and pass its path with --hamer-checkpoint."
            )
        if self.batch_size < 1:
            raise Hand4DGSError(f"--batch-size is {self.batch_size}; pass 1 or more hand crops per forward pass.")
        if self.dataset.arctic_trim < 0:
            raise Hand4DGSError(
                f"--arctic-trim is {self.dataset.arctic_trim}; pass the number of annotated frames to drop at each end "
                "(0 or more)."
            )
        kind = detect_layout(self.data)
        if kind == "sequence":
            raise Hand4DGSError(
                f"{self.data} is in the project's sequence format, which holds its pseudo-labels already: "
                f"train on it directly with `ns-train hand4dgs --data {self.data}` (features are cached on first use)."
            )
        started = time.perf_counter()
        sequences = read_dataset_sequences(self.data, self.dataset, kind=kind)
        console = Console()
        for number, seq in enumerate(sequences, start=1):
            preprocess_sequence(
                seq, checkpoint, device=self.device, batch_size=self.batch_size, features=self.features
            )
            console.print(
                f"({number}/{len(sequences)}) {seq.name}: {seq.num_frames} frames -> [bold]{seq.hamer_dir}[/]",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            f"HaMeR pseudo-labels{' and features' if self.features else ''} of {len(sequences)} "
            f"video{'s' if len(sequences) != 1 else ''} done in {time.perf_counter() - started:.0f} s. "
            "Train with the same dataset options (MANO folder, HaMeR root, split, boxes):\n"
            f"  {shlex.join(['ns-train', 'hand4dgs', '--data', str(self.data)])}",
            highlight=False,
            soft_wrap=True,
        )
