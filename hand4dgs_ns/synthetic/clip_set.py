"""Synthesises a benchmark set for a generalised model: train and test videos, each its own
subject (hand shape, skin, sleeves), room, lighting, motion and head path, then the split file.

Video ``i`` of a split is :func:`synthesize_clip` with the seed :func:`video_seed` derives from the
set's seed, the split and ``i`` (``SeedSequence(seed, spawn_key=(split, i))``, what
``SeedSequence(seed).spawn`` would hand out): the same seed gives identical files, train and test
videos never share a seed, and asking for more videos leaves the ones already asked for unchanged.
``splits.json`` is written last, by a rename, so a folder without it is visibly incomplete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from hand4dgs_ns.data.sequence_format import is_sequence_folder
from hand4dgs_ns.dataparsers.splits import SPLIT_FILE
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.progress import progress_bar
from hand4dgs_ns.synthetic.clip import SynthConfig, SynthResult, check_config, synthesize_clip

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


@dataclass(frozen=True)
class ClipSetResult:
    """What :func:`synthesize_clip_set` wrote."""

    root: Path
    """The set's folder, holding the video folders and ``splits.json``."""
    splits: dict[str, list[str]]
    """Video names by split, as written to ``splits.json``."""
    clips: dict[str, SynthResult]
    """Each video's result, by name."""
    seeds: dict[str, int]
    """Each video's seed, by name."""
    num_frames: int
    """Frames written over all videos."""
    seconds: float
    """Wall-clock time."""


def video_name(split: Split, index: int) -> str:
    """The folder name of video ``index`` of ``split``: ``train_000``, ``test_002``, ..."""
    return f"{split}_{index:03d}"


def video_seed(seed: int, split: Split, index: int) -> int:
    """The seed of video ``index`` of ``split`` in the set seeded with ``seed`` (64 bits)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def _check_destination(out: Path, names: list[str], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise file_error(out, "is a file", "choose a folder for the set")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise file_error(
            out, "already exists and is not empty", "choose another folder, or pass --overwrite to replace its videos"
        )
    for name in names:
        path = out / name
        if path.exists() and not (is_sequence_folder(path) or (path.is_dir() and not any(path.iterdir()))):
            raise file_error(
                path, "exists and is not a sequence folder", "remove it yourself or choose another output folder"
            )


def _single_threaded_worker() -> None:
    # Each clip renders in threads of its own; torch's intra-op threads would oversubscribe the cores.
    torch.set_num_threads(1)


def synthesize_clip_set(
    out: Path,
    num_train: int,
    num_test: int,
    config: SynthConfig = SynthConfig(),
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    test_frames: int | None = None,
) -> ClipSetResult:
    """Writes ``out/train_000 ...``, ``out/test_000 ...`` (each with the settings of ``config`` and
    its own seed derived from ``config.seed``), then ``out/splits.json`` naming them.

    Args:
        out: the set's folder; it must be missing or empty unless ``overwrite``.
        num_train: number of train videos (at least 1).
        num_test: number of test videos (at least 1).
        config: settings of every video; its seed seeds the set.
        workers: videos synthesised at once, each in a process of its own (spawned).
        overwrite: replace existing video folders of the same names and the split file.
        progress: show a progress bar over the videos.
        test_frames: frames of each test video (default: ``config.num_frames``). Held-out videos
            as long as real ones beside many short training videos: at a given synthesis time,
            more training subjects help a generalised model more than longer videos do.
    """
    out = Path(out)
    check_config(config)
    if test_frames is not None and test_frames < 2:
        raise Hand4DGSError(f"--test-frames {test_frames} is too few; ask for at least 2 frames.")
    test_config = config if test_frames is None else replace(config, num_frames=test_frames)
    if num_train < 1 or num_test < 1:
        raise Hand4DGSError(
            f"--train {num_train} --test {num_test}: a set needs at least one train and one test video; ask for more."
        )
    if workers < 1:
        raise Hand4DGSError(f"--workers {workers}: synthesise with at least one worker.")
    counts = {"train": num_train, "test": num_test}
    splits = {split: [video_name(split, i) for i in range(counts[split])] for split in SPLITS}
    seeds = {video_name(split, i): video_seed(config.seed, split, i) for split in SPLITS for i in range(counts[split])}
    _check_destination(out, list(seeds), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / SPLIT_FILE).unlink(missing_ok=True)  # the set is incomplete until it is written again

    start = time.perf_counter()
    split_configs = {"train": config, "test": test_config}
    video_configs = {name: replace(split_configs[split], seed=seeds[name]) for split, names in splits.items() for name in names}
    jobs = {name: (out / name, video_configs[name], overwrite, False) for name in seeds}
    clips: dict[str, SynthResult] = {}
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("synth-set: videos", total=len(jobs))
        if workers == 1:
            for name, args in jobs.items():
                clips[name] = synthesize_clip(*args)
                bar.advance(task)
        else:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(min(workers, len(jobs)), context, initializer=_single_threaded_worker)
            try:
                futures = {pool.submit(synthesize_clip, *args): name for name, args in jobs.items()}
                for future in as_completed(futures):
                    clips[futures[future]] = future.result()
                    bar.advance(task)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    tmp = out / f".{SPLIT_FILE}.partial"
    tmp.write_text(json.dumps(splits, indent=2) + "\n")
    os.replace(tmp, out / SPLIT_FILE)
    return ClipSetResult(
        root=out,
        splits=splits,
        clips={name: clips[name] for name in seeds},
        seeds=seeds,
        num_frames=sum(c.num_frames for c in video_configs.values()),
        seconds=time.perf_counter() - start,
    )
