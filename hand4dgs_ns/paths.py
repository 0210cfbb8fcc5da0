"""Where the package keeps what it computes: one cache root, overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$HAND4DGS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hand4dgs``, else ``~/.cache/hand4dgs``."""
    explicit = os.environ.get("HAND4DGS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hand4dgs"
