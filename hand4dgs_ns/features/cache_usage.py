"""What a feature cache folder holds, and removing entries no longer needed.

A cache entry is the file pair of :class:`~hand4dgs_ns.features.cache.FeatureCache`: ``NAME.npy``
and ``NAME.json`` (NAME may hold one sub-folder, one per video). The manifest's modification time
is the entry's last use (every valid load touches it) and its ``source`` field, when present,
the video folder it was built from. Entries are only ever added as videos are trained on, moved or
re-synthesised, so the folder grows until something here removes them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout

from hand4dgs_ns.features.cache import FeatureCache
from hand4dgs_ns.paths import ARCTIC_UNDISTORTED_DIR, MASKS_DIR, SYNTHETIC_DIR


@dataclass(frozen=True)
class CacheEntryInfo:
    """One cache entry as found on disk."""

    name: str
    """Path of the entry relative to the cache folder, without suffix (``video-1a2b3c/crops-64x48``)."""
    nbytes: int
    """Size of its data file and manifest."""
    last_used: float
    """When it was last built or loaded (seconds since the epoch)."""
    source: Optional[Path]
    """The video folder it was built from; None where the manifest does not say (older entries)."""

    @property
    def folder(self) -> str:
        """The video sub-folder holding it ('' for an entry at the top)."""
        return self.name.rpartition("/")[0]

    @property
    def source_missing(self) -> bool:
        return self.source is not None and not self.source.exists()

    def unused_days(self, now: float) -> float:
        return max(now - self.last_used, 0.0) / 86400.0


_ENTRY_NAME = re.compile(r"^(crops|frames|masks|tokens)-|-tokens$")
"""Names the cache gives its entries (``crops-64x48``, ``masks-320x240``, ``hamer-vit-h-tokens``, ...)."""


def _manifest(path: Path) -> Optional[dict]:
    """The cache manifest at ``path``, or None for a missing, damaged or foreign file."""
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    return manifest if isinstance(manifest, dict) and "format" in manifest and "key" in manifest else None


def scan_cache(root: Path) -> list[CacheEntryInfo]:
    """Every entry in the cache folder ``root``, sorted by name: file pairs with a cache manifest,
    and data files of a cache entry's name left without one (a rebuild that was killed). Other
    files (a wrong --cache-dir) are never entries."""
    stems = {p.with_suffix("") for pattern in ("*.npy", "*/*.npy", "*.json", "*/*.json") for p in root.glob(pattern)}
    entries = []
    for stem in sorted(s for s in stems if not s.name.startswith(".")):
        manifest = _manifest(stem.with_suffix(".json"))
        orphan = manifest is None and stem.with_suffix(".npy").is_file() and not stem.with_suffix(".json").exists()
        if manifest is None and not (orphan and _ENTRY_NAME.search(stem.name)):
            continue
        files = _files(stem)
        recorded = manifest.get("source") if manifest is not None else None
        source = Path(recorded) if isinstance(recorded, str) else None
        entries.append(
            CacheEntryInfo(
                name=stem.relative_to(root).as_posix(),
                nbytes=sum(f.stat().st_size for f in files),
                last_used=max(f.stat().st_mtime for f in files),
                source=source,
            )
        )
    return entries


def select_entries(
    entries: list[CacheEntryInfo], unused_days: Optional[float], missing_sources: bool, now: Optional[float] = None
) -> list[CacheEntryInfo]:
    """The entries unused for more than ``unused_days`` (None: no age limit), or with
    ``missing_sources``, those whose recorded video folder no longer exists."""
    now = time.time() if now is None else now
    return [
        e for e in entries
        if (unused_days is not None and e.unused_days(now) > unused_days) or (missing_sources and e.source_missing)
    ]


def remove_entries(root: Path, entries: list[CacheEntryInfo]) -> tuple[list[CacheEntryInfo], list[tuple[CacheEntryInfo, str]]]:
    """Removes ``entries`` from the cache folder ``root``; returns those removed and those kept,
    with why: one another process is building (its lock is held), used since it was scanned, or
    whose files cannot be removed (on Windows, a file a running process has mapped).

    Lock files and video folders stay: removing a lock another process is about to take would let
    two processes build one entry at once. They are empty files.
    """
    cache = FeatureCache(root)
    removed, skipped = [], []
    for entry in entries:
        stem = root / entry.name
        try:
            with FileLock(cache.lock_path(entry.name), timeout=0):
                if max((f.stat().st_mtime for f in _files(stem)), default=0.0) > entry.last_used:
                    skipped.append((entry, "used since the scan"))
                    continue
                for suffix in (".json", ".npy"):  # the manifest first: a half-removed entry never looks valid
                    stem.with_suffix(suffix).unlink(missing_ok=True)
            removed.append(entry)
        except Timeout:
            skipped.append((entry, "being built by another process"))
        except OSError as err:
            skipped.append((entry, f"not removable ({err.strerror or err})"))
    return removed, skipped


@dataclass(frozen=True)
class CacheFolderInfo:
    """A folder beside the feature cache under the cache root, with what it holds."""

    path: Path
    nbytes: int
    holds: str


OTHER_CACHE_FOLDERS = {
    SYNTHETIC_DIR: "the default synthetic clip (hand4dgs demo), per version",
    ARCTIC_UNDISTORTED_DIR: "ARCTIC frames undistorted for training",
    MASKS_DIR: "H2O and ARCTIC hand masks drawn from the pseudo-labels",
}
"""The cache root's other folders (``hand4dgs_ns.paths.cache_root()``), by name."""


def other_cache_folders(root: Path) -> list[CacheFolderInfo]:
    """The cache root's folders other than the feature cache that exist, each with its size
    (one folder per synthetic clip version or ARCTIC sequence, summed up per kind)."""
    found = []
    for name, holds in OTHER_CACHE_FOLDERS.items():
        folder = root / name
        if folder.is_dir():
            nbytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
            found.append(CacheFolderInfo(path=folder, nbytes=nbytes, holds=holds))
    return found


def _files(stem: Path) -> list[Path]:
    return [f for f in (stem.with_suffix(".npy"), stem.with_suffix(".json")) if f.is_file()]
