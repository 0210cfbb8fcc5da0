"""``hand4dgs synth``: write a synthetic egocentric two-hand clip in the project's sequence format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console

from hand4dgs_ns.synthetic.clip import SynthConfig, synthesize_clip
from hand4dgs_ns.synthetic.default_clip import default_clip_path, ensure_default_clip

__all__ = ["Synth", "default_clip_path", "ensure_default_clip"]


@dataclass(frozen=True)
class Synth:
    """Render a synthetic egocentric video of two hands (head camera, two static cameras), with
    masks, boxes, ground-truth joints and noisy pseudo-labels, into a new sequence folder."""

    out: tyro.conf.Positional[Path]
    """Output sequence folder (must not exist unless --overwrite)."""
    frames: int = 300
    """Number of frames."""
    seed: int = 0
    """Random seed: subject, room, camera path and motion; the same seed gives identical files."""
    width: int = 320
    """Image width in pixels."""
    height: int = 240
    """Image height in pixels."""
    fps: float = 30.0
    """Frame rate."""
    hfov_deg: float = 90.0
    """Horizontal field of view of the head camera in degrees."""
    pseudo_error_mm: float = 25.0
    """MPJPE of the pseudo-labels against the ground truth, in mm (0 = exact labels)."""
    static_views: bool = True
    """Also render two static third-person cameras under views/ for novel-view evaluation."""
    supersample: int = 2
    """Antialiasing factor per axis (1 = off, faster)."""
    overwrite: bool = False
    """Replace OUT if it is an existing sequence folder."""

    def main(self) -> None:
        """Synthesises the clip and prints where it went and how long it took."""
        config = SynthConfig(
            num_frames=self.frames,
            seed=self.seed,
            width=self.width,
            height=self.height,
            fps=self.fps,
            hfov_deg=self.hfov_deg,
            pseudo_error_mm=self.pseudo_error_mm,
            static_views=self.static_views,
            supersample=self.supersample,
        )
        result = synthesize_clip(self.out, config, overwrite=self.overwrite)
        left, right = result.valid_fraction
        Console().print(
            f"Wrote {self.frames} frames ({self.width}x{self.height}) to [bold]{result.path}[/] in "
            f"{result.seconds:.1f} s ({self.frames / result.seconds:.1f} frames/s); pseudo-label MPJPE "
            f"{result.pseudo_mpjpe_mm:.1f} mm; hands usable in {left:.0%} (left) / {right:.0%} (right) of frames.",
            highlight=False,
        )
