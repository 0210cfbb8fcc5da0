"""What a feature cache folder holds, and removing entries no longer needed.

A cache entry is the file pair of :class:`~hand4dgs_ns.features.cache.FeatureCache`: ``NAME.npy``
and ``NAME.json`` (NAME may hold one sub-folder, one per video). The manifest's modification time
is the entry's last use (every valid load touches it) and its ``source`` field, when present,
the video folder it was built from. Entries are only ever added as videos are trained on, moved or
re-synthesised, so the folder grows until something here removes them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout


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


def scan_cache(root: Path) -> list[CacheEntryInfo]:
    """Every entry in the cache folder ``root`` (a data file, a manifest, or both), sorted by name."""
    stems = {p.with_suffix("") for pattern in ("*.npy", "*/*.npy", "*.json", "*/*.json") for p in root.glob(pattern)}
    entries = []
    for stem in sorted(s for s in stems if not s.name.startswith(".")):
        files = [f for f in (stem.with_suffix(".npy"), stem.with_suffix(".json")) if f.is_file()]
        if not files:
            continue
        manifest = stem.with_suffix(".json")
        source = None
        if manifest.is_file():
            try:
                recorded = json.loads(manifest.read_text()).get("source")
                source = Path(recorded) if isinstance(recorded, str) else None
            except (ValueError, AttributeError, OSError):
                source = None  # a damaged manifest: the entry is rebuilt on use, and may be removed
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


def remove_entries(root: Path, entries: list[CacheEntryInfo]) -> tuple[list[CacheEntryInfo], list[CacheEntryInfo]]:
    """Removes ``entries`` from the cache folder ``root``; returns (removed, skipped). An entry
    another process is building (its lock is held) is skipped. Video folders left empty go too."""
    removed, skipped = [], []
    for entry in entries:
        stem = root / entry.name
        lock_path = stem.with_name(f".{stem.name}.lock")
        try:
            with FileLock(lock_path, timeout=0):
                for suffix in (".json", ".npy"):  # the manifest first: a half-removed entry never looks valid
                    stem.with_suffix(suffix).unlink(missing_ok=True)
            removed.append(entry)
        except Timeout:
            skipped.append(entry)
    # A video folder holding only lock files goes, locks and all. (A process that opened one of
    # those locks in the same instant would build its entry unguarded: pruning is not meant to run
    # beside a run that starts on that video.)
    for folder in {(root / e.name).parent for e in removed} - {root}:
        if folder.is_dir() and not any(p for p in folder.iterdir() if not p.name.endswith(".lock")):
            for lock in folder.glob(".*.lock"):
                lock.unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass  # something arrived meanwhile: keep the folder
    return removed, skipped
