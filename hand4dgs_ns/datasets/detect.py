"""Which kind of hand data a folder holds, and reading any kind into the project's sequences.

Three layouts are recognised (docs/formats.md sections 1-3):

- ``"sequence"``: the project's sequence format v1, one folder holding ``rgb/``,
  ``cameras.npz`` and ``hands.npz``, or a folder of such folders;
- ``"h2o"``: H2O at any level of ``<root>/subjectN/<action>/<n>/cam4/``;
- ``"arctic"``: ARCTIC at any level its reader accepts (the root holding
  ``data/arctic_data/data``, that folder, ``raw_seqs/``, ``images/``, a subject or a sequence).

:func:`load_sequences` turns any of them into validated
:class:`~hand4dgs_ns.data.sequence_format.Sequence` objects: sequence folders are read as they
are; dataset videos are read by their dataset's reader and get their HaMeR pseudo-labels and
hand masks attached (:func:`~hand4dgs_ns.datasets.hamer.attach_pseudo_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Literal, get_args, get_type_hints

import tyro
from rich.progress import Progress
from typing_extensions import assert_never

from hand4dgs_ns.data.sequence_format import (
    CAMERAS_FILE,
    HANDS_FILE,
    RGB_DIR,
    Sequence,
    verify_frames,
    find_sequences,
    is_sequence_folder,
    read_sequence,
)
from hand4dgs_ns.datasets.arctic import (
    ARCTIC_PAPER_SPLIT,
    arctic_data_dir,
    find_arctic_sequences,
    is_arctic_folder,
    read_arctic_sequence,
)
from hand4dgs_ns.datasets.base import DatasetName, DatasetSequence
from hand4dgs_ns.datasets.h2o import (
    H2O_PAPER_SPLIT,
    find_h2o_sequences,
    is_h2o_folder,
    read_h2o_sequence,
    split_h2o_sequences,
)
from hand4dgs_ns.datasets.hamer import attach_pseudo_labels
from hand4dgs_ns.datasets.mask_refine import MaskRefinement
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.mano import MANO_DIR_ENV, MANO_URL, mano_dir_from_env, missing_mano_error
from hand4dgs_ns.paths import ARCTIC_UNDISTORTED_DIR, MASKS_DIR, cache_root
from hand4dgs_ns.progress import progress_bar

DatasetKind = Literal["sequence", "h2o", "arctic"]
"""The layouts :func:`detect_layout` tells apart."""
DatasetSplit = Literal["all", "paper-train", "paper-test"]
"""Which videos of a dataset folder to read (see :attr:`DatasetOptions.split`)."""

MANO_FILES = ("MANO_RIGHT.pkl", "MANO_LEFT.pkl")

_WHAT = {
    "sequence": f"{RGB_DIR}/ + {CAMERAS_FILE} + {HANDS_FILE} (hand4dgs sequence)",
    "h2o": "subject*/<action>/<n>/cam4/ (H2O)",
    "arctic": "data/arctic_data/data with raw_seqs/ and meta/misc.json (ARCTIC)",
}
_LOOKED_FOR = f"{_WHAT['sequence']}, {_WHAT['h2o']}, or {_WHAT['arctic']}"
_NAMES = {"sequence": "a hand4dgs sequence", "h2o": "an H2O", "arctic": "an ARCTIC"}


@dataclass(frozen=True)
class DatasetOptions:
    """How to read an H2O or ARCTIC folder; sequence-format folders need none of it.

    Training's dataparsers, ``hand4dgs preprocess`` and ``hand4dgs convert`` nest it (a command
    for one dataset nests a subclass from :func:`dataset_options_for`), so that each option is
    defined here only. Options that only one dataset reads are named ``<dataset>_...``.
    """

    mano_dir: Path | None = None
    """Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (ground truth and hand masks); when None,
    the folder named by the environment variable HAND4DGS_MANO_DIR."""
    hamer_root: Path | None = None
    """Folder of per-video HaMeR folders <hamer-root>/<video name>; when None each dataset's own,
    where `hand4dgs preprocess` puts them (H2O <seq>/cam4/hamer, ARCTIC
    data/arctic_data/data/hamer/<sid>/<seq>)."""
    split: DatasetSplit = "all"
    """Which videos to read: 'all' found under the folder, or the train or test part of the
    paper's split (H2O_PAPER_SPLIT, ARCTIC_PAPER_SPLIT) among those under the folder."""
    arctic_subjects: tuple[str, ...] = ()
    """ARCTIC only: keep these subjects (e.g. s05); all when empty."""
    arctic_sequences: tuple[str, ...] = ()
    """ARCTIC only: keep these sequences, by name (box_grab_01) or with their subject
    (s05/box_grab_01); all when empty."""
    arctic_cropped: bool = False
    """ARCTIC only: read cropped_images (840x600) instead of the full 2800x2000 images."""
    arctic_trim: int = 100
    """ARCTIC only: annotated frames dropped at each end of a video (the paper drops 100)."""
    h2o_detections: Path | None = None
    """H2O only, for a single video: an .npz of detected boxes (bbox (F,2,4), valid (F,2); see
    hand4dgs_ns.datasets.h2o) used instead of boxes around the projected ground-truth joints."""
    box_margin: float = 0.2
    """Boxes around the projected ground-truth joints grow by this share of their size on each side."""
    cache_dir: Path | None = None
    """Where derived files (undistorted ARCTIC frames, hand masks) are kept; when None, the
    package's cache root (hand4dgs_ns.paths.cache_root())."""
    refine_masks: bool = True
    """Move each hand mask drawn from HaMeR's meshes onto the hand the frame shows (GrabCut seeded
    by the drawn hand, hand4dgs_ns.datasets.mask_refine); off, the masks show the hands where
    HaMeR put them and the image losses pull the model's hands there. Read by training and
    `hand4dgs convert`; `hand4dgs preprocess` draws no masks."""

    def resolved_mano_dir(self, data: Path) -> Path:
        """The MANO folder (option, else ``$HAND4DGS_MANO_DIR``), checked to hold both files.

        Raises:
            Hand4DGSError: naming ``data`` when no folder is given, or the missing file.
        """
        folder = self.mano_dir if self.mano_dir is not None else mano_dir_from_env()
        if folder is None:
            raise Hand4DGSError(
                f"{data}: reading H2O or ARCTIC needs the MANO model files {MANO_FILES[0]} and {MANO_FILES[1]} "
                f"(from the MANO website, {MANO_URL}, after registering); pass the folder holding them with "
                f"--mano-dir or set {MANO_DIR_ENV}."
            )
        for name in MANO_FILES:
            if not (Path(folder) / name).is_file():
                standard = str(missing_mano_error(Path(folder) / name)).rstrip(".")
                raise Hand4DGSError(f"{standard}, or pass the folder holding them with --mano-dir or set {MANO_DIR_ENV}.")
        return Path(folder)

    def resolved_cache_dir(self) -> Path:
        """:attr:`cache_dir`, else :func:`hand4dgs_ns.paths.cache_root`."""
        return Path(self.cache_dir) if self.cache_dir is not None else cache_root()


def dataset_options_for(
    dataset: DatasetName, name: str, module: str
) -> type[DatasetOptions]:
    """:class:`DatasetOptions` as the command line of a command that reads one dataset shows it.

    The other dataset's options (fields named ``<other dataset>_...``) are hidden and keep their
    defaults; the dataset's own keep their names, so every command spells an option alike
    (``--arctic-trim`` in ``convert arctic``, ``preprocess`` and the dataparser). The fields, defaults and docstrings stay those of :class:`DatasetOptions`, of which the
    result is a subclass.

    Args:
        dataset: the dataset the command reads.
        name: the module-level name the class is assigned to, and ``module`` that module's
            ``__name__``: saved configs (nerfstudio's ``config.yml``) name the class by them.
    """
    hints = get_type_hints(DatasetOptions)
    # A subclass re-annotating a field changes only how tyro shows it; the field keeps its default.
    annotations: dict[str, object] = {}
    defaults: dict[str, object] = {}
    for option in fields(DatasetOptions):
        owner = option.name.partition("_")[0]
        if owner in get_args(DatasetName) and owner != dataset:
            annotations[option.name] = tyro.conf.Suppress[hints[option.name]]
        else:
            continue
        defaults[option.name] = field(default=option.default, default_factory=option.default_factory)
    namespace = {
        "__module__": module,
        "__qualname__": name,
        "__doc__": f"DatasetOptions for a command that reads {dataset} only.",
        "__annotations__": annotations,
        **defaults,
    }
    return dataclass(frozen=True)(type(name, (DatasetOptions,), namespace))


H2OOptions = dataset_options_for("h2o", "H2OOptions", __name__)
"""The options that apply to H2O (no ARCTIC ones on the command line)."""
ArcticOptions = dataset_options_for("arctic", "ArcticOptions", __name__)
"""The options that apply to ARCTIC (no H2O ones on the command line)."""


def _holds_sequence_files(folder: Path) -> bool:
    return (folder / CAMERAS_FILE).is_file() or (folder / HANDS_FILE).is_file()


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []


def _no_such_folder(path: Path) -> Hand4DGSError:
    return Hand4DGSError(
        f"{path}: no such folder; point to a hand4dgs sequence folder (or a folder of them), an H2O folder or an ARCTIC folder."
    )


def detect_layout(path: Path) -> DatasetKind:
    """Which kind of hand data ``path`` holds: ``"sequence"``, ``"h2o"`` or ``"arctic"``.

    A folder holding ``cameras.npz`` or ``hands.npz`` (or whose sub-folders do) is a sequence
    folder; then ARCTIC and H2O are looked for at every level of their layouts; last, a folder
    holding only ``rgb/`` (or whose sub-folders do) is taken for a damaged sequence folder, so
    that reading it says what is missing. H2O comes before that last rule because its camera
    folders hold ``rgb/`` too.

    Raises:
        Hand4DGSError: one sentence naming ``path`` when it is missing or none of the layouts.
    """
    path = Path(path)
    if not path.is_dir():
        raise _no_such_folder(path)
    children = _subfolders(path)
    if _holds_sequence_files(path) or any(_holds_sequence_files(child) for child in children):
        return "sequence"
    if is_arctic_folder(path):
        return "arctic"
    if is_h2o_folder(path):
        return "h2o"
    if is_sequence_folder(path) or any(is_sequence_folder(child) for child in children):
        return "sequence"
    raise Hand4DGSError(f"{path}: no hand data found (looked for {_LOOKED_FOR}); point to one of these.")


def _is_layout(path: Path, kind: DatasetKind) -> bool:
    if kind == "sequence":
        return is_sequence_folder(path) or any(is_sequence_folder(child) for child in _subfolders(path))
    if kind == "h2o":
        return is_h2o_folder(path)
    if kind == "arctic":
        return is_arctic_folder(path)
    assert_never(kind)


def require_layout(path: Path, kind: DatasetKind | None) -> DatasetKind:
    """The layout of ``path``: detected when ``kind`` is None, else checked to be ``kind``.

    Raises:
        Hand4DGSError: naming ``path`` when it is missing or not of that kind.
    """
    if kind is None:
        return detect_layout(path)
    path = Path(path)
    if not path.is_dir():
        raise _no_such_folder(path)
    if not _is_layout(path, kind):
        raise Hand4DGSError(
            f"{path}: not {_NAMES[kind]} folder (looked for {_WHAT[kind]}); point to one, "
            "or use the hand4dgs-sequence dataparser, which detects the layout."
        )
    return kind


def _check_options(path: Path, kind: DatasetKind, options: DatasetOptions) -> None:
    """Refuses video-selecting options that do not apply to ``kind`` (ignoring them would read other
    videos) and a negative ARCTIC trim."""
    misplaced = []
    if kind == "sequence" and options.split != "all":
        misplaced.append(f"split {options.split}")
    if kind != "arctic":
        misplaced += [f"arctic_subjects {' '.join(options.arctic_subjects)}"] if options.arctic_subjects else []
        misplaced += [f"arctic_sequences {' '.join(options.arctic_sequences)}"] if options.arctic_sequences else []
    if kind != "h2o" and options.h2o_detections is not None:
        misplaced.append(f"h2o_detections {options.h2o_detections}")
    if kind == "arctic" and options.arctic_trim < 0:
        raise Hand4DGSError(
            f"{path}: arctic_trim is {options.arctic_trim}; pass the number of annotated frames to drop at each end "
            "(0 or more)."
        )
    if misplaced:
        raise Hand4DGSError(
            f"{path}: is {_NAMES[kind]} folder, to which {misplaced[0]} does not apply; drop that option or point to "
            f"the dataset it is for."
        )


def _h2o_videos(path: Path, options: DatasetOptions) -> list[Path]:
    if options.split == "all":
        videos = find_h2o_sequences(path)
    else:
        train, test = split_h2o_sequences(path, H2O_PAPER_SPLIT)
        videos = train if options.split == "paper-train" else test
        if not videos:
            part = (
                ", ".join(H2O_PAPER_SPLIT.train_subjects)
                if options.split == "paper-train"
                else ", ".join(f"{s}/{a}" for s, a in H2O_PAPER_SPLIT.test_actions)
            )
            raise Hand4DGSError(
                f"{path}: holds no H2O video of the paper split's {options.split.removeprefix('paper-')} part ({part}); "
                "point to a folder that holds them or use split all."
            )
    if options.h2o_detections is not None and len(videos) != 1:
        raise Hand4DGSError(
            f"{path}: holds {len(videos)} H2O videos but h2o_detections {options.h2o_detections} is for one; "
            "point to a single sequence folder such as subject4/h1/0."
        )
    return videos


def _arctic_videos(path: Path, options: DatasetOptions) -> list[tuple[str, str]]:
    videos = find_arctic_sequences(path, options.arctic_subjects, options.arctic_sequences)
    if options.split == "all":
        return videos
    split = ARCTIC_PAPER_SPLIT
    if options.split == "paper-train":
        kept = [(sid, seq) for sid, seq in videos if sid in split.train_subjects]
        part = ", ".join(split.train_subjects)
    else:
        kept = [video for video in videos if video in split.test_sequences]
        part = ", ".join(f"{sid}/{seq}" for sid, seq in split.test_sequences)
    if not kept:
        raise Hand4DGSError(
            f"{path}: holds no ARCTIC video of the paper split's {options.split.removeprefix('paper-')} part ({part}); "
            "point to a folder that holds them or use split all."
        )
    return kept


def _videos_progress() -> Progress:
    """A transient progress bar over videos (:func:`hand4dgs_ns.progress.progress_bar`). The
    readers show their own bars inside it; rich before 14 allows one live display at a time, so
    there it stays hidden."""
    return progress_bar(disable=int(version("rich").split(".")[0]) < 14)


def _video_readers(
    path: Path, kind: DatasetName, options: DatasetOptions, mano_dir: Path
) -> tuple[str, list[Callable[[], DatasetSequence]]]:
    """The dataset's name and one reader call per selected video (nothing is read yet)."""
    if kind == "h2o":
        return "H2O", [
            partial(
                read_h2o_sequence,
                folder,
                mano_dir,
                hamer_root=options.hamer_root,
                box_margin=options.box_margin,
                detections=options.h2o_detections,
            )
            for folder in _h2o_videos(path, options)
        ]
    if kind == "arctic":
        pairs = _arctic_videos(path, options)
        data_dir = arctic_data_dir(path)
        assert data_dir is not None  # find_arctic_sequences has refused a folder without one
        return "ARCTIC", [
            partial(
                read_arctic_sequence,
                data_dir,
                sid,
                seq,
                mano_dir,
                cropped=options.arctic_cropped,
                trim=options.arctic_trim,
                hamer_root=options.hamer_root,
                cache_dir=options.resolved_cache_dir() / ARCTIC_UNDISTORTED_DIR,
                box_margin=options.box_margin,
            )
            for sid, seq in pairs
        ]
    assert_never(kind)


def read_dataset_sequences(
    path: Path, options: DatasetOptions, *, kind: DatasetKind | None = None
) -> list[DatasetSequence]:
    """The H2O or ARCTIC videos at ``path`` selected by ``options``, without pseudo-labels.

    Args:
        path: an H2O or ARCTIC folder at any level of its layout.
        options: which videos and how to read them.
        kind: the dataset ``path`` must be; detected when None.

    Raises:
        Hand4DGSError: one sentence for a missing or unknown folder, a sequence-format folder,
            an option that does not apply, no MANO files, or a damaged video.
    """
    path = Path(path)
    kind = require_layout(path, kind)
    if kind == "sequence":
        raise Hand4DGSError(
            f"{path}: is a hand4dgs sequence folder, not an H2O or ARCTIC folder; read it with load_sequences "
            "(or read_sequence)."
        )
    _check_options(path, kind, options)
    name, readers = _video_readers(path, kind, options, options.resolved_mano_dir(path))
    videos = []
    with _videos_progress() as progress:
        task = progress.add_task(f"Reading {name} videos", total=len(readers))
        for read in readers:
            videos.append(read())
            progress.advance(task)
    return videos


def load_sequences(
    path: Path, options: DatasetOptions, *, check_frames: bool = False, kind: DatasetKind | None = None
) -> list[Sequence]:
    """Every video at ``path`` as a validated :class:`Sequence`, whatever the layout.

    Sequence-format folders are read with :func:`read_sequence` (``options`` must not select
    videos there); H2O and ARCTIC videos with their reader, then their HaMeR pseudo-labels and
    hand masks are attached, the masks cached in the ``masks`` folder of
    :meth:`DatasetOptions.resolved_cache_dir`.

    Args:
        path: a sequence folder or a folder of them, or an H2O or ARCTIC folder.
        options: how to read dataset folders.
        check_frames: also decode every frame (and, for sequence folders, every mask) now,
            to find corrupt files before training starts.
        kind: the layout ``path`` must have; detected when None.
    """
    path = Path(path)
    kind = require_layout(path, kind)
    _check_options(path, kind, options)
    if kind == "sequence":
        folders = find_sequences(path)
        # rich < 14 cannot nest progress bars; with check_frames each sequence shows its own.
        with progress_bar(disable=check_frames) as progress:
            return [
                read_sequence(folder, check_frames=check_frames)
                for folder in progress.track(folders, description="Reading sequences")
            ]
    mano_dir = options.resolved_mano_dir(path)
    name, readers = _video_readers(path, kind, options, mano_dir)
    mask_cache = options.resolved_cache_dir() / MASKS_DIR
    refinement = MaskRefinement() if options.refine_masks else None
    sequences = []
    with _videos_progress() as progress:
        task = progress.add_task(f"Reading {name} videos with their HaMeR pseudo-labels", total=len(readers))
        for read in readers:
            video = read()
            if check_frames:
                verify_frames(video.image_paths, video.cameras.width, video.cameras.height, f"Checking frames of {video.name}")
            sequences.append(attach_pseudo_labels(video, mano_dir, mask_cache, refinement))
            progress.advance(task)
    return sequences
