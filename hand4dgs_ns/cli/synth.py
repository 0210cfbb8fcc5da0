"""``hand4dgs synth``: write a synthetic egocentric two-hand clip in the project's sequence format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.synthetic.clip import SynthConfig, synthesize_clip
from hand4dgs_ns.synthetic.default_clip import default_clip_path, ensure_default_clip

__all__ = ["Synth", "default_clip_path", "ensure_default_clip"]


@dataclass(frozen=True)
class Synth:
    """Render a synthetic egocentric video of two hands (head camera, two static cameras), with
    masks, boxes, ground-truth joints and noisy pseudo-labels, into a new sequence folder."""

    out: tyro.conf.Positional[Path]
    """Output sequence folder (must not exist unless --overwrite)."""
    # name="" drops the "config." prefix from the clip's flags but keeps nested ones (--appearance.*),
    # which OmitArgPrefixes would strip too.
    config: Annotated[SynthConfig, tyro.conf.arg(name="")] = field(default_factory=SynthConfig)
    """The clip's settings."""
    overwrite: bool = False
    """Replace OUT if it is an existing sequence folder."""

    def main(self) -> None:
        """Synthesises the clip and prints where it went and how long it took."""
        config = self.config
        result = synthesize_clip(self.out, config, overwrite=self.overwrite)
        left, right = result.valid_fraction
        Console().print(
            f"Wrote {config.num_frames} frames ({config.width}x{config.height}) to [bold]{result.path}[/] in "
            f"{result.seconds:.1f} s ({config.num_frames / result.seconds:.1f} frames/s); pseudo-label MPJPE "
            f"{result.pseudo_mpjpe_mm:.1f} mm; hands usable in {left:.0%} (left) / {right:.0%} (right) of frames.",
            highlight=False,
        )
