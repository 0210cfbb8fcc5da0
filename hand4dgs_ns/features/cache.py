"""On-disk cache of per-frame, per-hand backbone inputs or outputs.

A frozen backbone (HaMeR's ViT) is run once per sequence and its tokens are stored as float16
``(F, 2, tokens, channels)``; for a trainable backbone the uint8 crops ``(F, 2, 3, h, w)`` are
stored instead, so each crop is cut only once. Slot 0 is the left hand (cropped mirrored), 1
the right hand; hands marked invalid are zeros.

Each entry is one ``.npy`` file (memory-mapped on load) and a JSON manifest holding the
:class:`CacheKey`, the array's shape and dtype, the data file's size and SHA-256, and a
checksum of the manifest itself. An entry is reused only if all of that matches; anything
else (no entry, another key, a truncated or damaged file) rebuilds it. Files are written
under a temporary name and renamed, and the old manifest is removed first, so an interrupted
build never leaves an entry that looks valid. Processes sharing the folder build an entry one at
a time (a lock file beside it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from filelock import FileLock
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hand4dgs_ns.data.sequence_format import HAND_SIDES, read_rgb
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.output_folder import remove_leftovers
from hand4dgs_ns.features.backbones.base import HandBackbone
from hand4dgs_ns.geometry.mirror import CROPS_MIRRORED
from hand4dgs_ns.features.crops import (
    HAMER_BBOX_SHAPE_HW,
    HAMER_RESCALE,
    crop_hands_per_image,
    crop_params,
    crops_to_uint8,
    normalize_imagenet,
)

CACHE_FORMAT = 1
_FP16_MAX = 65504.0
_HASH_BLOCK = 16 << 20


@dataclass(frozen=True)
class CacheKey:
    """Everything a cached array depends on; two equal keys mean interchangeable arrays."""

    frames: str
    """Identity of the frame files (see :func:`files_identity`)."""
    boxes: str
    """Digest of the hand boxes and validity flags (see :func:`array_digest`)."""
    backbone: str
    """Backbone name and output size for tokens; empty for crops (they do not depend on it)."""
    weights: str
    """The backbone's :meth:`~HandBackbone.weights_identity` for tokens; empty for crops."""
    crop: str
    """Crop settings: geometry version, box enlargement, aspect and output size."""
    content: Literal["tokens", "crops", "frames", "masks"]
    """What the array holds (decoded frames and masks: :mod:`hand4dgs_ns.features.frame_cache`,
    whose ``crop`` field holds the resize settings)."""

    def digest(self) -> str:
        """SHA-256 of the key's fields."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def files_identity(paths: Sequence[Path]) -> str:
    """Digest of each file's resolved path, size and modification time (no file is read)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """Digest of arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@contextmanager
def _process_lock(path: Path) -> Iterator[None]:
    """Holds the lock file ``path`` against other processes; where it cannot be made (a read-only
    cache folder: nothing can be built there either) valid entries are still served."""
    lock = FileLock(path)
    try:
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FeatureCache:
    """A folder of cached ``(F, 2, ...)`` arrays, one file pair per entry name.

    Args:
        root: folder holding the entries (created on the first build); an entry name may hold
            one sub-folder (one per video).
        verify_data: hash the whole data file on every load (about 1.7 GB/s); off, only its
            size, header, shape and dtype are checked.
        console: where the progress bar and rebuild notes go (stderr by default).
    """

    def __init__(self, root: Path, verify_data: bool = True, console: Console | None = None):
        self.root = Path(root)
        self.verify_data = verify_data
        self.console = console or Console(stderr=True)
        self.shared_bar = None
        """Set by :func:`hand4dgs_ns.features.build_pool.map_videos` while it builds many videos'
        entries: builds then report to its one bar instead of showing a bar each."""
        self._lock = threading.Lock()
        self._entry_locks: dict[str, threading.Lock] = {}

    def paths(self, name: str) -> tuple[Path, Path]:
        """Data file and manifest of entry ``name``."""
        return self.root / f"{name}.npy", self.root / f"{name}.json"

    def lock_path(self, name: str) -> Path:
        """The lock file processes take before loading or building entry ``name`` (kept beside it)."""
        data_path = self.paths(name)[0]
        return data_path.with_name(f".{data_path.stem}.lock")

    def load(self, key: CacheKey, total: int, name: str | None = None) -> tuple[np.ndarray | None, str]:
        """The entry's array (read-only memory map) if it is valid for ``key``, else ``None`` and why."""
        data_path, manifest_path = self.paths(name or default_name(key))
        if not manifest_path.is_file():
            return None, "no cached entry"
        try:
            manifest = json.loads(manifest_path.read_text())
            checksum_ok = manifest.get("checksum") == _manifest_checksum(manifest)
        except (ValueError, AttributeError, OSError):
            return None, "unreadable manifest"
        if not checksum_ok:
            return None, "manifest checksum mismatch"
        same_key = manifest.get("key") == asdict(key) and manifest.get("digest") == key.digest()
        if manifest.get("format") != CACHE_FORMAT or not same_key:
            return None, "stale entry (inputs, weights or settings changed)"
        if not data_path.is_file() or data_path.stat().st_size != manifest.get("nbytes"):
            return None, "data file missing or truncated"
        if self.verify_data and _file_sha256(data_path) != manifest.get("sha256"):
            return None, "data file damaged (checksum mismatch)"
        try:
            array = np.load(data_path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            return None, f"data file unreadable ({exc})"
        as_recorded = list(array.shape) == manifest.get("shape") and array.dtype.str == manifest.get("dtype")
        if not as_recorded or array.shape[0] != total:
            return None, "data file has the wrong shape or dtype"
        try:  # the manifest's time is the entry's last use (hand4dgs cache --prune-unused-days)
            os.utime(manifest_path)
        except OSError:
            pass  # a read-only cache still serves its entries
        return array, "valid"

    def get_or_build(
        self,
        key: CacheKey,
        build_fn: Callable[[], Iterable[np.ndarray]],
        total: int,
        name: str | None = None,
        source: Path | None = None,
    ) -> np.ndarray:
        """The cached array for ``key``, building it first unless a valid entry exists.

        ``build_fn()`` yields consecutive chunks along the first axis (e.g. batches of
        frames) adding up to ``total`` rows; they are written straight to disk, so the array
        never has to fit in memory. ``source`` (the video's folder) is recorded in the manifest,
        so ``hand4dgs cache`` can tell entries whose video is gone. Returns a read-only memory map.
        """
        name = name or default_name(key)
        # Threads building several videos at once (build_pool) share one temporary file name per
        # entry and process; one lock per entry makes a second thread wait for the first's build.
        # Runs started together on the same data (two ns-train commands) share the cache folder:
        # a file lock per entry makes the second process wait too, then load what the first built,
        # instead of removing the first's files while it writes or reads them.
        with self._lock:
            entry_lock = self._entry_locks.setdefault(name, threading.Lock())
        lock_path = self.lock_path(name)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with entry_lock, _process_lock(lock_path):
            array, reason = self.load(key, total, name)
            if array is not None:
                return array
            if reason != "no cached entry":
                self.console.print(f"Rebuilding feature cache {self.paths(name)[0]}: {reason}.")
            self._build(key, build_fn, total, name, source)
            array, reason = self.load(key, total, name)
            if array is None:
                raise RuntimeError(f"feature cache {self.paths(name)[0]} is invalid right after building it: {reason}")
            return array

    def _build(
        self, key: CacheKey, build_fn: Callable[[], Iterable[np.ndarray]], total: int, name: str, source: Path | None
    ) -> None:
        if total <= 0:
            raise ValueError(f"nothing to cache for {name}: total is {total}")
        data_path, manifest_path = self.paths(name)  # their folder made by get_or_build
        remove_leftovers(data_path.parent, f".{data_path.stem}.*.tmp")  # a killed build's
        manifest_path.unlink(missing_ok=True)
        tmp_data = data_path.with_name(f".{data_path.name}.{os.getpid()}.tmp")
        tmp_manifest = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.tmp")
        try:
            shape, dtype = self._write_chunks(tmp_data, build_fn, total, name)
            manifest = {
                "format": CACHE_FORMAT,
                "key": asdict(key),
                "digest": key.digest(),
                "shape": list(shape),
                "dtype": dtype.str,
                "nbytes": tmp_data.stat().st_size,
                "sha256": _file_sha256(tmp_data),
            }
            if source is not None:
                manifest["source"] = str(source)
            manifest["checksum"] = _manifest_checksum(manifest)
            tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.replace(tmp_data, data_path)
            os.replace(tmp_manifest, manifest_path)
        finally:
            tmp_data.unlink(missing_ok=True)
            tmp_manifest.unlink(missing_ok=True)

    def _write_chunks(
        self, path: Path, build_fn: Callable[[], Iterable[np.ndarray]], total: int, name: str
    ) -> tuple[tuple[int, ...], np.dtype]:
        out: np.memmap | None = None
        done = 0
        if self.shared_bar is not None:
            self.shared_bar.building()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        own_bar = self.shared_bar is None
        with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, disable=not own_bar) as progress:
            task = progress.add_task(f"Caching {name}", total=total)
            for chunk in build_fn():
                chunk = np.asarray(chunk)
                if out is None:
                    out = np.lib.format.open_memmap(path, mode="w+", dtype=chunk.dtype, shape=(total, *chunk.shape[1:]))
                if done + len(chunk) > total or chunk.shape[1:] != out.shape[1:]:
                    raise RuntimeError(f"build of {name} yielded {chunk.shape} after {done} of {out.shape} rows")
                out[done : done + len(chunk)] = chunk
                done += len(chunk)
                progress.advance(task, len(chunk))
        if out is None or done != total:
            raise RuntimeError(f"build of {name} yielded {done} rows, expected {total}")
        out.flush()
        shape, dtype = out.shape, out.dtype
        del out
        return shape, dtype


def default_name(key: CacheKey) -> str:
    """Entry name when none is given: one entry per content, backbone and crop setting.

    Frames, boxes and weights are left out on purpose: when they change, the same entry is
    found stale and rebuilt in place instead of leaving the old one behind.
    """
    which = hashlib.sha256(f"{key.backbone}|{key.crop}".encode()).hexdigest()[:10]
    return f"{key.content}-{which}"


def _prefetched_batches(paths: Sequence[Path], batch: int, workers: int) -> Iterator[tuple[range, np.ndarray]]:
    """Decodes frames on a thread pool (OpenCV releases the GIL), one batch ahead of use."""
    starts = range(0, len(paths), batch)
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list[Future]:
            return [pool.submit(read_rgb, p) for p in paths[start : start + batch]]

        pending = submit(0)
        for i, start in enumerate(starts):
            ahead = submit(starts[i + 1]) if i + 1 < len(starts) else []
            images = [f.result() for f in pending]
            shapes = {im.shape for im in images}
            if len(shapes) > 1:
                odd = next(p for p, im in zip(paths[start : start + batch], images) if im.shape != images[0].shape)
                raise Hand4DGSError(f"{odd} has a different size from the sequence's other frames: resize it to match.")
            yield range(start, start + len(images)), np.stack(images)
            pending = ahead


def _check_boxes(bbox: np.ndarray, valid: np.ndarray, paths: Sequence[Path]) -> None:
    finite = np.isfinite(bbox).all(-1)
    positive = (bbox[..., 2] > bbox[..., 0]) & (bbox[..., 3] > bbox[..., 1])
    bad = np.argwhere(valid & ~(finite & positive))
    if len(bad):
        frame, slot = bad[0]
        side = HAND_SIDES[slot]
        hands = Path(paths[0]).parent.parent / "hands.npz"
        where = hands if hands.is_file() else Path(paths[0]).parent
        raise file_error(
            where, f"the {side} hand box of frame {frame} ({bbox[frame, slot].tolist()}) is empty or not finite",
            "fix it in the sequence's hands.npz or mark that hand invalid",
        )


def crop_settings(out_hw: tuple[int, int], rescale: float) -> str:
    """The crop settings part of a cache key."""
    aspect = HAMER_BBOX_SHAPE_HW
    return f"hamer-square-v1;rescale={rescale!r};aspect_hw={aspect};out_hw={tuple(out_hw)};bilinear;zero-border"


def sequence_cache_key(
    image_paths: Sequence[Path], bbox: np.ndarray, valid: np.ndarray, backbone: HandBackbone, rescale: float
) -> CacheKey:
    """The :class:`CacheKey` of :func:`hand_features_for_sequence`'s entry."""
    tokens = not backbone.trainable
    return CacheKey(
        frames=files_identity(image_paths),
        boxes=array_digest(np.asarray(bbox, np.float64), np.asarray(valid, bool)),
        backbone=f"{backbone.name}:{backbone.num_tokens}x{backbone.token_dim}" if tokens else "",
        weights=backbone.weights_identity() if tokens else "",
        crop=crop_settings(backbone.input_hw, rescale),
        content="tokens" if tokens else "crops",
    )


def hand_features_for_sequence(
    image_paths: Sequence[Path],
    bbox: np.ndarray,
    valid: np.ndarray,
    backbone: HandBackbone,
    cache: FeatureCache,
    *,
    rescale: float = HAMER_RESCALE,
    batch_frames: int = 16,
    workers: int = 4,
) -> np.ndarray:
    """Cached backbone inputs or outputs for both hands of every frame of a sequence.

    Args:
        image_paths: the F frames, all the same size.
        bbox: ``(F, 2, 4)`` xyxy pixel boxes, slot 0 left, 1 right.
        valid: ``(F, 2)`` which hands to process; the others are stored as zeros.
        backbone: a frozen backbone's tokens are cached, a trainable one's crops; work runs
            on the backbone's device, ``batch_frames`` frames (two hands each) at a time.
        cache: where the entry lives.

    Returns:
        A read-only memory map: ``(F, 2, tokens, channels)`` float16 for a frozen backbone,
        ``(F, 2, 3, h, w)`` uint8 crops in [0, 255] for a trainable one (feed them through
        :func:`hand4dgs_ns.features.crops.uint8_crops_to_input`).
    """
    paths = [Path(p) for p in image_paths]
    bbox = np.asarray(bbox, np.float32)
    valid = np.asarray(valid, bool)
    if bbox.shape != (len(paths), 2, 4) or valid.shape != (len(paths), 2):
        raise ValueError(f"expected boxes (F, 2, 4) and valid (F, 2) for F = {len(paths)}, got {bbox.shape}, {valid.shape}")
    _check_boxes(bbox, valid, paths)
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise Hand4DGSError(f"Frame {missing} does not exist: restore it or rebuild the sequence.")
    key = sequence_cache_key(paths, bbox, valid, backbone, rescale)
    # Invalid hands get a harmless unit box so the batch stays finite; their output is zeroed.
    safe_boxes = np.where(valid[..., None], bbox, np.array([0, 0, 1, 1], np.float32))

    def build() -> Iterator[np.ndarray]:
        device = next(iter(backbone.parameters()), torch.empty(0)).device
        flip = torch.tensor(CROPS_MIRRORED, device=device)
        with torch.no_grad():
            for frames, images in _prefetched_batches(paths, batch_frames, workers):
                idx = list(frames)
                centre, size = crop_params(torch.from_numpy(safe_boxes[idx]).to(device), rescale)
                frames_t = torch.from_numpy(images).to(device)
                crops = crop_hands_per_image(
                    frames_t, centre, size, flip.expand(len(idx), 2), backbone.input_hw, normalize=False
                )
                keep = torch.from_numpy(valid[idx]).to(device)
                if backbone.trainable:
                    out = crops_to_uint8(crops) * keep[:, :, None, None, None]
                else:
                    shape = (len(idx), 2, backbone.num_tokens, backbone.token_dim)
                    out = torch.zeros(shape, dtype=torch.float16, device=device)
                    if keep.any():
                        tokens = backbone(normalize_imagenet(crops[keep]))
                        # float16 holds the cache at half the size; clamping keeps rare outliers finite.
                        out[keep] = tokens.clamp(-_FP16_MAX, _FP16_MAX).to(torch.float16)
                yield out.cpu().numpy()

    h, w = backbone.input_hw
    name = f"crops-{h}x{w}" if backbone.trainable else f"{backbone.name}-tokens"
    name = f"{video_folder_name(paths)}/{name}"
    return cache.get_or_build(key, build, total=len(paths), name=name, source=video_source(paths))


def video_source(image_paths: Sequence[Path]) -> Path:
    """The folder a video's cache entries are built from: its frames' folder, or the sequence
    folder holding it when the frames sit in ``images/`` or ``rgb/``."""
    folder = Path(image_paths[0]).resolve().parent
    return folder.parent if folder.name in ("images", "rgb") else folder


def video_folder_name(image_paths: Sequence[Path]) -> str:
    """The cache sub-folder of one video: its folder's name and a digest of its resolved path.

    One sub-folder per video lets a shared cache hold many videos; the video's location (not its
    frames' contents) names it, so a changed video is found stale and rebuilt in place.
    """
    folder = Path(image_paths[0]).resolve().parent
    return f"{video_source(image_paths).name or 'video'}-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"
