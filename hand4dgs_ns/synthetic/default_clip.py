"""The embedded default clip: synthesised once with fixed settings and cached per user."""

from __future__ import annotations

from pathlib import Path

from hand4dgs_ns.data.sequence_format import is_sequence_folder
from hand4dgs_ns.paths import SYNTHETIC_DIR, cache_root
from hand4dgs_ns.synthetic.clip import SynthConfig, synthesize_clip

DEFAULT_CLIP_VERSION = "default-v2"
"""Bump when the generator's output for the default settings changes, so caches refresh."""
DEFAULT_CLIP_CONFIG = SynthConfig(num_frames=300, seed=0, width=320, height=240, pseudo_error_mm=25.0)
"""The settings of the default clip."""


def default_clip_path() -> Path:
    """Where the default synthetic clip lives (it may not exist yet)."""
    return cache_root() / SYNTHETIC_DIR / DEFAULT_CLIP_VERSION


def ensure_default_clip(progress: bool = True) -> Path:
    """The default clip's folder, synthesised on first use (about a minute on a laptop CPU)."""
    path = default_clip_path()
    if is_sequence_folder(path):
        return path
    # A concurrent first use may finish first; the writer's rename makes either result whole.
    synthesize_clip(path, DEFAULT_CLIP_CONFIG, overwrite=True, progress=progress)
    return path
