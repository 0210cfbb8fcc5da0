"""``hand4dgs cache``: what the feature cache holds per video, and freeing the space of what is not needed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.cache_usage import (
    CacheEntryInfo,
    CacheFolderInfo,
    other_cache_folders,
    remove_entries,
    scan_cache,
    select_entries,
)
from hand4dgs_ns.paths import FEATURES_DIR, cache_root

CONSOLE = Console()


@dataclass(frozen=True)
class Cache:
    """List the feature cache per video (entries, size, last use, whether the video still exists)
    and size the cache root's other folders; with --prune-unused-days or --prune-missing-sources,
    remove the feature-cache entries they select. Removed entries are rebuilt the next time their
    video is trained on or inferred."""

    cache_dir: Optional[Path] = None
    """The feature cache folder (default: the features/ folder of the cache root, $HAND4DGS_CACHE_DIR
    or ~/.cache/hand4dgs; the same default as --pipeline.datamanager.cache-dir)."""
    prune_unused_days: Optional[float] = None
    """Remove entries not built or loaded for more than this many days."""
    prune_missing_sources: bool = False
    """Remove entries whose video folder no longer exists (a deleted or moved clip or set)."""
    dry_run: bool = False
    """Say what would be removed, and remove nothing."""

    def main(self) -> None:
        root = Path(self.cache_dir) if self.cache_dir is not None else cache_root() / FEATURES_DIR
        if self.cache_dir is not None and not root.is_dir():
            raise Hand4DGSError(f"{root} is not a folder: pass the feature cache folder (--cache-dir), or leave it out for the default.")
        entries = scan_cache(root) if root.is_dir() else []
        now = time.time()
        CONSOLE.print(usage_table(entries, root, now))
        if self.cache_dir is None:
            others = other_cache_folders(cache_root())
            if others:
                CONSOLE.print(other_folders_table(others))
        if self.prune_unused_days is None and not self.prune_missing_sources:
            return
        chosen = select_entries(entries, self.prune_unused_days, self.prune_missing_sources, now)
        if self.dry_run:
            CONSOLE.print(f"Would remove {len(chosen)} entries ({_size(sum(e.nbytes for e in chosen))}); nothing removed (--dry-run).")
            for entry in chosen:
                CONSOLE.print(f"  {entry.name}", highlight=False)
            return
        removed, skipped = remove_entries(root, chosen)
        CONSOLE.print(f"Removed {len(removed)} entries ({_size(sum(e.nbytes for e in removed))}) from {root}.", highlight=False)
        for entry, why in skipped:
            CONSOLE.print(f"  kept {entry.name}: {why}", highlight=False)


def usage_table(entries: list[CacheEntryInfo], root: Path, now: float) -> Table:
    """One row per video folder: its entries, size, last use and source."""
    table = Table(title=f"Feature cache {root}: {len(entries)} entries, {_size(sum(e.nbytes for e in entries))}")
    for column, justify in (("video folder", "left"), ("entries", "right"), ("size", "right"), ("last used", "right"), ("source", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    folders: dict[str, list[CacheEntryInfo]] = {}
    for entry in entries:
        folders.setdefault(entry.folder, []).append(entry)
    for folder, group in sorted(folders.items()):
        sources = {e.source: e.source_missing for e in group if e.source is not None}
        if not sources:
            source = "not recorded"
        else:
            source = ", ".join(str(s) + (" (missing)" if missing else "") for s, missing in sorted(sources.items()))
        days = min(e.unused_days(now) for e in group)
        table.add_row(folder or ".", str(len(group)), _size(sum(e.nbytes for e in group)), f"{days:.1f} days ago", source)
    return table


def other_folders_table(folders: list[CacheFolderInfo]) -> Table:
    """The cache root's other folders; nothing here prunes them (remove a folder to free its space)."""
    table = Table(title="Also in the cache root (remove a folder to free its space; it is made again on next use)")
    for column, justify in (("folder", "left"), ("size", "right"), ("holds", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for folder in folders:
        table.add_row(str(folder.path), _size(folder.nbytes), folder.holds)
    return table


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:.2f} GiB"
