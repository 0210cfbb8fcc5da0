"""Where the package keeps what it computes: one cache root, overridable by environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


FEATURES_DIR = "features"
"""The cache root's folder of the feature cache (frames, masks, crops, backbone tokens per video)."""
SYNTHETIC_DIR = "synthetic"
"""Its folder of the default synthetic clip, one folder per generator version."""
ARCTIC_UNDISTORTED_DIR = "arctic_undistorted"
"""Its folder of ARCTIC frames undistorted for training."""
MASKS_DIR = "masks"
"""Its folder of hand masks drawn from H2O and ARCTIC pseudo-labels (refined to the frames)."""


def cache_root() -> Path:
    """``$HAND4DGS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hand4dgs``, else ``~/.cache/hand4dgs``."""
    explicit = os.environ.get("HAND4DGS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hand4dgs"


def ffmpeg_on_path() -> None:
    """Makes a program called ``ffmpeg`` findable on PATH for this process, if none is.

    nerfstudio's ``ns-render`` looks for ``ffmpeg`` on PATH before rendering (even to images) and
    stops without it. The imageio-ffmpeg wheel, a dependency, ships an ffmpeg binary under another
    name: it is linked as ``<cache root>/bin/ffmpeg`` and that folder is put first on PATH, so
    no system package is needed. Any failure leaves PATH as it was (nerfstudio then says what is
    missing).
    """
    if shutil.which("ffmpeg"):
        return
    try:
        import imageio_ffmpeg

        binary = Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve()
        folder = cache_root() / "bin"
        link = folder / "ffmpeg"
        if not (link.is_symlink() and link.resolve() == binary):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".ffmpeg.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(binary)
            os.replace(tmp, link)  # atomic: concurrent processes never see a half-made link
    except (ImportError, RuntimeError, OSError):
        return
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
