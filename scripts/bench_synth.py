"""Times ``hand4dgs synth`` settings on this machine and prints a table (frames/s, seconds).

.venv/bin/python scripts/bench_synth.py            # default clip plus cheaper variants
.venv/bin/python scripts/bench_synth.py --frames 60
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hand4dgs_ns.synthetic.clip import SynthConfig, synthesize_clip

VARIANTS = {
    "default (320x240, views, 2x2 AA)": {},
    "no static views": {"static_views": False},
    "no antialiasing": {"supersample": 1},
    "640x480": {"width": 640, "height": 480},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    table = Table(title=f"hand4dgs synth, {args.frames} frames")
    for column in ("setting", "seconds", "frames/s", "pseudo MPJPE mm"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, changes) in enumerate(VARIANTS.items()):
            config = SynthConfig(num_frames=args.frames, **changes)
            result = synthesize_clip(Path(tmp) / f"clip{i}", config, progress=False)
            table.add_row(
                name, f"{result.seconds:.1f}", f"{args.frames / result.seconds:.1f}", f"{result.pseudo_mpjpe_mm:.1f}"
            )
            Console().print(f"{name}: {result.seconds:.1f} s")
    Console().print(table)


if __name__ == "__main__":
    main()
