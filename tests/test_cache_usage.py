"""``hand4dgs cache``: the feature cache listed per video, and entries of unused or deleted videos removed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from rich.console import Console

import hand4dgs_ns.cli.cache as cache_cli
from hand4dgs_ns.cli.cache import Cache
from hand4dgs_ns.cli.main import run_user_command
from hand4dgs_ns.features.cache import CacheKey, FeatureCache, video_folder_name, video_source
from hand4dgs_ns.features.cache_usage import scan_cache

KEY = CacheKey(frames="f", boxes="b", backbone="", weights="", crop="c", content="crops")


def _video(tmp_path, name):
    """A sequence folder with one frame file (only its path matters to the cache's naming)."""
    frame = tmp_path / name / "images" / "000000.jpg"
    frame.parent.mkdir(parents=True)
    frame.write_bytes(b"x")
    return [frame]


def _cache_entry(cache, paths, rows=4):
    data = np.arange(rows * 6, dtype=np.uint8).reshape(rows, 2, 3)
    name = f"{video_folder_name(paths)}/crops-64x48"
    return cache.get_or_build(KEY, lambda: iter([data]), total=rows, name=name, source=video_source(paths))


@pytest.fixture
def quiet(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(cache_cli, "CONSOLE", Console(file=out, width=200))
    return out


def test_entries_record_their_video_and_last_use(tmp_path):
    cache = FeatureCache(tmp_path / "cache", console=Console(file=io.StringIO()))
    paths = _video(tmp_path, "clip_a")
    _cache_entry(cache, paths)
    (entry,) = scan_cache(cache.root)
    assert entry.source == tmp_path.resolve() / "clip_a" and not entry.source_missing
    assert entry.name.startswith("clip_a-") and entry.name.endswith("/crops-64x48") and entry.nbytes > 24
    manifest = cache.root / f"{entry.name}.json"
    os.utime(manifest, (time.time() - 5 * 86400,) * 2)
    _cache_entry(cache, paths)  # a load (no rebuild) counts as a use
    (used,) = scan_cache(cache.root)
    assert used.unused_days(time.time()) < 0.01


def test_prune_removes_the_entries_of_deleted_and_of_unused_videos_only(tmp_path, quiet):
    cache = FeatureCache(tmp_path / "cache", console=Console(file=io.StringIO()))
    kept, gone, old = (_video(tmp_path, n) for n in ("kept", "gone", "old"))
    for paths in (kept, gone, old):
        _cache_entry(cache, paths)
    (tmp_path / "gone" / "images" / "000000.jpg").unlink()
    (tmp_path / "gone" / "images").rmdir()
    (tmp_path / "gone").rmdir()
    (old_entry,) = [e for e in scan_cache(cache.root) if e.name.startswith("old-")]
    os.utime(cache.root / f"{old_entry.name}.json", (time.time() - 40 * 86400,) * 2)
    os.utime(cache.root / f"{old_entry.name}.npy", (time.time() - 40 * 86400,) * 2)

    Cache(cache_dir=cache.root, prune_missing_sources=True, prune_unused_days=30, dry_run=True).main()
    assert len(scan_cache(cache.root)) == 3 and "Would remove 2 entries" in quiet.getvalue()

    Cache(cache_dir=cache.root, prune_missing_sources=True, prune_unused_days=30).main()
    assert [e.name.split("-")[0] for e in scan_cache(cache.root)] == ["kept"]
    for folder in cache.root.iterdir():  # the removed videos' folders keep only their (empty) lock files
        if not folder.name.startswith("kept-"):
            assert all(p.name.endswith(".lock") and p.stat().st_size == 0 for p in folder.iterdir())
    assert "Removed 2 entries" in quiet.getvalue() and "(missing)" in quiet.getvalue()
    # what was removed is rebuilt on the next use
    np.testing.assert_array_equal(_cache_entry(cache, old), np.arange(24, dtype=np.uint8).reshape(4, 2, 3))


def test_a_missing_cache_folder_is_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_user_command(Cache(cache_dir=tmp_path / "nowhere").main)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "nowhere is not a folder" in err and "Traceback" not in err


def test_prune_keeps_an_entry_being_built_or_used_since_the_scan(tmp_path):
    from hand4dgs_ns.features.cache_usage import remove_entries

    cache = FeatureCache(tmp_path / "cache", console=Console(file=io.StringIO()))
    building, used = _video(tmp_path, "building"), _video(tmp_path, "used")
    for paths in (building, used):
        _cache_entry(cache, paths)
    entries = scan_cache(cache.root)
    busy = next(e for e in entries if e.name.startswith("building-"))
    later = time.time() + 5
    os.utime(cache.root / f"{next(e for e in entries if e.name.startswith('used-')).name}.json", (later, later))
    # another process's build holds the entry's lock
    lock = cache.root / busy.folder / ".crops-64x48.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; from filelock import FileLock\nwith FileLock({str(lock)!r}):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = {"out": remove_entries(cache.root, entries)}
    finally:
        holder.kill()
        holder.wait()
    removed, skipped = result["out"]
    assert removed == [] and sorted(why for _, why in skipped) == ["being built by another process", "used since the scan"]
    assert len(scan_cache(cache.root)) == 2


def test_files_that_are_not_cache_entries_are_never_listed(tmp_path):
    root = tmp_path / "cache"
    (root / "video-x").mkdir(parents=True)
    np.save(root / "video-x" / "crops-64x48.npy", np.zeros(3))  # a cache entry's data left without its manifest
    np.save(root / "video-x" / "weights.npy", np.zeros(3))  # something else
    (root / "notes.json").write_text('{"a": 1}')
    assert [e.name for e in scan_cache(root)] == ["video-x/crops-64x48"]


def test_the_default_listing_also_sizes_the_cache_roots_other_folders(tmp_path, quiet, monkeypatch):
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path))
    cache = FeatureCache(tmp_path / "features", console=Console(file=io.StringIO()))
    _cache_entry(cache, _video(tmp_path, "clip_a"))
    clip = tmp_path / "synthetic" / "default-v2" / "images"
    clip.mkdir(parents=True)
    (clip / "000000.jpg").write_bytes(b"x" * 3 * 2**20)
    Cache().main()
    out = quiet.getvalue()
    assert "1 entries" in out and "clip_a" in out
    assert str(tmp_path / "synthetic") in out and "3.0 MiB" in out
    assert "arctic_undistorted" not in out  # only folders that exist
    quiet.seek(0)
    quiet.truncate()
    Cache(cache_dir=cache.root).main()  # an explicit feature cache folder lists that folder only
    assert "synthetic" not in quiet.getvalue()
