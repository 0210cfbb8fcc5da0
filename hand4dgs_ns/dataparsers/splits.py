"""Train / eval splits over the frames of several sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Int
from typing_extensions import assert_never

from hand4dgs_ns.errors import Hand4DGSError

EvalMode = Literal["interval", "sequences", "split-file", "all"]

SPLIT_FILE = "splits.json"
"""File beside a folder of sequence folders naming its train and test videos:
``{"train": ["train_000", ...], "test": ["test_000", ...]}`` (written by ``hand4dgs synth-set``)."""


def read_split_file(data: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The train and test video names of ``data/splits.json`` (see :data:`SPLIT_FILE`)."""
    path = Path(data) / SPLIT_FILE
    if not path.is_file():
        raise Hand4DGSError(
            f"{path} does not exist: eval-mode 'split-file' needs it (hand4dgs synth-set writes one); "
            "write it, or name the held-out videos with --eval-mode sequences --eval-sequences ..."
        )
    try:
        content = json.loads(path.read_text())
        train, test = tuple(map(str, content["train"])), tuple(map(str, content["test"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise Hand4DGSError(
            f"{path} is not a split file ({err}); write it as {{\"train\": [names], \"test\": [names]}}."
        ) from None
    if not train or not test or set(train) & set(test):
        raise Hand4DGSError(f"{path} must name at least one train and one test video, and no video in both; fix the lists.")
    return train, test


def split_frames(
    names: list[str],
    num_frames: list[int],
    split: str,
    eval_mode: EvalMode,
    eval_interval: int,
    eval_sequences: tuple[str, ...],
    data: Path,
) -> tuple[Int[np.ndarray, "N"], Int[np.ndarray, "N"]]:
    """The (sequence index, frame index) of every image in ``split``, in sequence then frame order.

    Args:
        names: sequence names, in sequence-index order.
        num_frames: frames per sequence.
        split: "train", or "val"/"test" for the held-out images.
        eval_mode: "interval" holds out frames ``0, n, 2n, ...`` of every sequence (as nerfstudio's
            interval mode does per dataset); "sequences" holds out the whole sequences named in
            ``eval_sequences``; "split-file" trains on the videos ``data/splits.json`` lists as train
            and holds out those it lists as test (others are not used); "all" uses every image for
            both splits.
        eval_interval: n for "interval".
        eval_sequences: held-out sequence names for "sequences".
        data: the dataset folder, named in error messages.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown dataparser split {split!r}")
    if eval_sequences and eval_mode != "sequences":
        raise Hand4DGSError(
            f"{data}: eval_sequences is set but eval_mode is '{eval_mode}'; pass --eval-mode sequences or drop it."
        )
    sequence_index = np.concatenate([np.full(n, s, dtype=np.int64) for s, n in enumerate(num_frames)])
    frame_index = np.concatenate([np.arange(n, dtype=np.int64) for n in num_frames])

    if eval_mode == "interval":
        if eval_interval < 2:
            raise Hand4DGSError(f"{data}: eval_interval is {eval_interval}; hold out every n-th frame with n >= 2.")
        held_out = frame_index % eval_interval == 0
    elif eval_mode == "sequences":
        if not eval_sequences:
            raise Hand4DGSError(f"{data}: eval_mode is 'sequences' but no sequence is named; pass --eval-sequences.")
        unknown = sorted(set(eval_sequences) - set(names))
        if unknown:
            raise Hand4DGSError(f"{data}: no sequence named {unknown[0]!r}; choose eval_sequences among {names}.")
        held_out = np.isin(sequence_index, [names.index(name) for name in eval_sequences])
        if held_out.all():
            raise Hand4DGSError(f"{data}: eval_sequences holds out every sequence; leave at least one for training.")
    elif eval_mode == "split-file":
        train, test = read_split_file(data)
        unknown = sorted(set(train + test) - set(names))
        if unknown:
            raise Hand4DGSError(f"{Path(data) / SPLIT_FILE} names {unknown[0]!r}, which is not a sequence under {data}; fix the list.")
        listed = np.isin(sequence_index, [names.index(n) for n in train + test])
        held_out = np.isin(sequence_index, [names.index(n) for n in test])
        sequence_index, frame_index, held_out = sequence_index[listed], frame_index[listed], held_out[listed]
    elif eval_mode == "all":
        held_out = np.zeros_like(frame_index, dtype=bool)
    else:
        assert_never(eval_mode)

    if eval_mode == "all":
        keep = np.ones_like(held_out)
    else:
        keep = ~held_out if split == "train" else held_out
    if not keep.any():
        raise Hand4DGSError(f"{data}: the '{split}' split holds no frame; change eval_mode or eval_interval.")
    return sequence_index[keep], frame_index[keep]
