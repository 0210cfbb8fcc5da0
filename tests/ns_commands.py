"""Shared settings for tests that run nerfstudio's own commands (ns-train, ns-eval, ns-render)."""

from __future__ import annotations

import sys
from pathlib import Path

BIN = Path(sys.executable).parent
"""Folder of the installed console scripts (ns-train, hand4dgs, ...)."""

FAST = [
    "--machine.device-type", "cpu", "--vis", "tensorboard", "--max-num-iterations", "6",
    "--steps-per-eval-batch", "3", "--steps-per-eval-image", "4", "--steps-per-eval-all-images", "1000",
    "--steps-per-save", "1000", "--pipeline.model.image-loss-from", "2", "--pipeline.model.gaussians-per-face", "1",
    "--pipeline.datamanager.frames-per-step", "2",
]
"""ns-train options for a few-step CPU run that reaches the image-loss phase."""
