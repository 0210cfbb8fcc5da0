"""Public datasets written out in the project's sequence format v1 (docs/formats.md section 1).

A converted folder holds exactly what training reads from the dataset itself
(:func:`~hand4dgs_ns.datasets.detect.load_sequences`): the frames, the hand masks drawn from
the pseudo-labels, the cameras, the hands (boxes, pseudo-label joints and vertices, ground
truth) and the static views. It no longer needs the dataset, the MANO files or the HaMeR files.

Frames are decoded and written again as PNG through :class:`SequenceWriter`, rather than copied:
the writer takes pixels, which is what lets it check every frame's size, dtype and mask values
and keep an unfinished folder out of sight, and ARCTIC's frames are JPEG (undistorted copies)
anyway. Re-encoding costs time (about 0.1 s per 1280x720 frame), not quality: PNG is lossless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from hand4dgs_ns.data.sequence_format import Sequence, SequenceWriter, is_sequence_folder
from hand4dgs_ns.datasets.detect import DatasetOptions, detect_layout, load_sequences
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.progress import progress_bar

DATASET_TITLES = {"h2o": "H2O", "arctic": "ARCTIC"}


def _read_image(file: Path, rgb: bool) -> np.ndarray:
    """An RGB frame (uint8 H x W x 3), or a mask's labels as stored (no palette lookup)."""
    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB") if rgb and image.mode != "RGB" else image).copy()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise Hand4DGSError(
            f"{file}: cannot be decoded as an image ({exc}); restore the file from the dataset and convert again."
        ) from exc


def _write(sequence: Sequence, writer: SequenceWriter, description: str) -> Path:
    """Writes every frame, mask and view frame of ``sequence`` through ``writer``, then its arrays."""
    views = sorted(sequence.views.values(), key=lambda view: view.name)
    with writer, progress_bar() as progress:
        task = progress.add_task(description, total=sequence.num_frames)
        for index in range(sequence.num_frames):
            mask = None if sequence.mask_paths is None else _read_image(sequence.mask_paths[index], rgb=False)
            writer.add_frame(_read_image(sequence.image_paths[index], rgb=True), mask)
            for view in views:
                view_mask = None if view.mask_paths is None else _read_image(view.mask_paths[index], rgb=False)
                writer.add_view_frame(view.name, _read_image(view.image_paths[index], rgb=True), view_mask)
            progress.advance(task)
        return writer.finish(sequence.cameras, sequence.hands, {view.name: view.cameras for view in views})


def write_sequence_folder(sequence: Sequence, out: Path, *, overwrite: bool = False) -> Path:
    """Writes ``sequence`` as a sequence folder at ``out``: frames, masks, cameras, hands and views.

    The folder appears complete or not at all: an error or an interruption leaves ``out`` as it
    was (:class:`SequenceWriter`).

    Args:
        sequence: any sequence (a dataset video with pseudo-labels attached, or a sequence folder).
        out: the folder to write; it must not exist unless ``overwrite``.
        overwrite: replace ``out`` when it is a sequence folder (never anything else).

    Returns:
        ``out``.

    Raises:
        Hand4DGSError: ``out`` exists (and may not be replaced), or a frame cannot be decoded.
    """
    out = Path(out)
    return _write(sequence, SequenceWriter(out, overwrite=overwrite), f"Writing {out}")


def check_dataset_kind(src: Path, dataset: Literal["h2o", "arctic"] | None = None) -> Literal["h2o", "arctic"]:
    """The kind of the dataset folder ``src``, refused when it is a sequence folder or not ``dataset``."""
    kind = detect_layout(src)
    if kind == "sequence":
        raise Hand4DGSError(
            f"{src} is already in the project's sequence format, so there is nothing to convert: "
            f"train on it directly with `ns-train hand4dgs --data {src}`."
        )
    if dataset is not None and kind != dataset:
        raise Hand4DGSError(
            f"{src} is an {DATASET_TITLES[kind]} folder, not {DATASET_TITLES[dataset]}: "
            f"convert it with `hand4dgs convert {kind} {src} ...` or point to an {DATASET_TITLES[dataset]} folder."
        )
    return kind


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise Hand4DGSError(f"{out}: is a file, not a folder; choose a folder for the converted sequences.")
    if is_sequence_folder(out):
        raise Hand4DGSError(
            f"{out}: is itself a sequence folder; choose another folder to hold one sequence folder per video."
        )


def convert_dataset(
    src: Path,
    out: Path,
    options: DatasetOptions,
    *,
    overwrite: bool = False,
    dataset: Literal["h2o", "arctic"] | None = None,
) -> list[Path]:
    """Converts every video of the H2O or ARCTIC folder ``src`` into ``out/<sequence name>/``.

    The videos are read exactly as training reads them (:func:`load_sequences` with
    ``options``), so their HaMeR files must exist. Every destination is checked before the
    first one is written; each sequence folder then appears complete or not at all, so an
    interrupted run leaves only finished sequences (run it again with ``overwrite``).

    Args:
        src: an H2O or ARCTIC folder at any level the readers accept.
        out: the folder to hold one sequence folder per video (created when missing).
        options: which videos and how to read them (split, ARCTIC subjects, MANO folder, ...).
        overwrite: replace sequence folders of the same names.
        dataset: refuse ``src`` unless it is of this dataset.

    Returns:
        The written sequence folders, in the order the dataset lists its videos.

    Raises:
        Hand4DGSError: ``src`` is not of ``dataset`` or already a sequence folder, a
            destination exists (without ``overwrite``), or the dataset reader refuses a file.
    """
    src, out = Path(src), Path(out)
    kind = check_dataset_kind(src, dataset)
    _check_out(out)
    sequences = load_sequences(src, options, kind=kind)
    # Built before anything is written: a writer checks its destination when created.
    writers = [SequenceWriter(out / sequence.name, overwrite=overwrite) for sequence in sequences]
    return [
        _write(sequence, writer, f"Writing {writer.out} ({number}/{len(writers)})")
        for number, (sequence, writer) in enumerate(zip(sequences, writers, strict=True), start=1)
    ]
