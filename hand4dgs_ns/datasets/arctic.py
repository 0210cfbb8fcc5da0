"""ARCTIC (Fan et al., CVPR 2023) read into :class:`DatasetSequence`: the egocentric view 0.

Layout (docs/formats.md section 3), under ``<root>/data/arctic_data/data/``::

    raw_seqs/sNN/<seq>.mano.npy        MANO ground truth, world frame (dict, np.save of a dict)
    raw_seqs/sNN/<seq>.egocam.dist.npy egocentric camera: world-to-camera R, T; K; dist8
    raw_seqs/sNN/<seq>.object.npy      object pose (F, 7): articulation (rad), rotation, translation
    images/sNN/<seq>/{0..8}/NNNNN.jpg  view 0 egocentric (lens-distorted), 1-8 static cameras
    cropped_images/sNN/<seq>/0/...     view 0 resized by 0.3 (views 1-8 there are per-frame crops)
    meta/misc.json                     per subject: ioi_offset, image_size, world2cam, intris_mat
    meta/object_vtemplates/<object>/   mesh.obj (mm) and parts.json (per vertex: true = bottom part)

A path is accepted at any of these levels (:func:`arctic_data_dir`):

- the ARCTIC root (holding ``data/arctic_data/data``; also ``unpack/arctic_data/data``, where
  ARCTIC's unzip script leaves it), ``arctic_data/`` or ``data/arctic_data/data`` itself;
- ``raw_seqs/``, ``images/`` or ``cropped_images/`` (all subjects);
- a subject folder ``raw_seqs/sNN``, ``images/sNN`` or ``cropped_images/sNN`` (that subject);
- a sequence folder ``images/sNN/<seq>`` or ``cropped_images/sNN/<seq>`` (that sequence).

Ground truth lives in undistorted space, so view 0 frames are undistorted once with
``cv2.undistort(image, K, dist8)`` into a cache and served from there with K as a pinhole.
Annotations are aligned to images with ``misc.json``'s ``ioi_offset`` (image number minus
offset = annotation index), and the paper's protocol drops the first and last 100 annotated
frames, where the hands are mostly out of view. Where the object's pose and template are there,
the object is drawn into the hand masks as an occluder (:mod:`hand4dgs_ns.datasets.objects`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import trimesh
from jaxtyping import Bool, Float
from PIL import Image, UnidentifiedImageError

from hand4dgs_ns.data.sequence_format import SequenceCameras, SequenceView, list_images
from hand4dgs_ns.datasets.base import DatasetSequence
from hand4dgs_ns.datasets.boxes import boxes_from_joints
from hand4dgs_ns.datasets.objects import ObjectTrack, arctic_object_track
from hand4dgs_ns.errors import file_error
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.hands import HandTemplate, hand_forward_axis_angle, load_template
from hand4dgs_ns.paths import ARCTIC_UNDISTORTED_DIR, cache_root
from hand4dgs_ns.progress import progress_bar

ARCTIC_FPS = 30.0
CROPPED_SCALE = 0.3
"""``cropped_images`` view 0 is the full frame resized by this factor (ARCTIC's crop_images.py)."""
NUM_STATIC_VIEWS = 8
ARCTIC_OBJECTS = (
    "box",
    "capsulemachine",
    "espressomachine",
    "ketchup",
    "laptop",
    "microwave",
    "mixer",
    "notebook",
    "phone",
    "scissors",
    "waffleiron",
)
_IMAGES = "images"
# ARCTIC's data_doc.md spells the folder with three p's; the unzip script writes two.
_CROPPED = ("cropped_images", "croppped_images")
_IMAGE_FOLDERS = (_IMAGES, *_CROPPED)
_SUBJECT = re.compile(r"s\d\d")
_HANDS = {"left": 0, "right": 1}  # dict key in mano.npy -> hand slot
_CACHE_VERSION = b"arctic-undistorted-v1"
_MANO_BATCH = 256
_JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
_RAW_SEQS, _META, _IMAGES_ZIPS, _CROPPED_ZIPS = "raw_seqs.zip", "meta.zip", "the images zips", "the cropped_images zips"


def _redownload(part: str) -> str:
    return f"download {part} again with ARCTIC's scripts (github.com/zc-alexfan/arctic) and unzip into data/arctic_data/data"


@dataclass(frozen=True)
class ArcticSplit:
    """Which ARCTIC videos train and which test (sequence names as in ``raw_seqs/sNN``)."""

    train_subjects: tuple[str, ...]
    """Subjects all of whose sequences are training videos."""
    test_sequences: tuple[tuple[str, str], ...]
    """``(subject, sequence)`` pairs of the test videos."""


ARCTIC_PAPER_SPLIT = ArcticSplit(
    train_subjects=("s01", "s08", "s09"),
    test_sequences=tuple(
        ("s05", f"{obj}_grab_01") for obj in ("capsulemachine", "espressomachine", "ketchup", "microwave", "mixer")
    ),
)
"""The paper's split: train on s01, s08, s09; test on five s05 grab sequences "where objects
remain rigid throughout the sequences". The paper does not name the five, so these are a
judgement, not the paper's list. Every ARCTIC object is articulated; in the ``*_grab_*``
sequences the subject does not operate the articulation, but a free hinge can still swing when
the object is turned over. The five chosen have a moving part expected to stay shut while the
object is handled (the ketchup cap, the microwave door, the mixer, and the lids of the capsule
and espresso machines), leaving out the free-swinging laptop screen, notebook cover, flip
phone, scissors, box lid and waffle-iron lid. Check a choice against the data with
:func:`articulation_range`, and replace it when the authors publish theirs."""


@dataclass(frozen=True)
class _Location:
    data_dir: Path
    subject: str | None
    sequence: str | None



def _is_data_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "raw_seqs").is_dir() or (path / "meta" / "misc.json").is_file())


def _locate(path: Path) -> _Location | None:
    path = Path(path)
    for candidate in (
        path,
        path / "data",
        path / "arctic_data" / "data",
        path / "data" / "arctic_data" / "data",
        path / "unpack" / "arctic_data" / "data",
    ):
        if _is_data_dir(candidate):
            return _Location(candidate, None, None)
    parents = path.parents
    if path.name in ("raw_seqs", *_IMAGE_FOLDERS) and _is_data_dir(path.parent):
        return _Location(path.parent, None, None)
    if (
        _SUBJECT.fullmatch(path.name)
        and len(parents) >= 2
        and parents[0].name in ("raw_seqs", *_IMAGE_FOLDERS)
        and _is_data_dir(parents[1])
    ):
        return _Location(parents[1], path.name, None)
    if (
        len(parents) >= 3
        and _SUBJECT.fullmatch(parents[0].name)
        and parents[1].name in _IMAGE_FOLDERS
        and _is_data_dir(parents[2])
    ):
        return _Location(parents[2], parents[0].name, path.name)
    return None


def arctic_data_dir(path: Path) -> Path | None:
    """ARCTIC's ``data/arctic_data/data`` folder for a path at any accepted level (module docstring), else None.

    A folder counts as the data folder when it holds ``raw_seqs/`` or ``meta/misc.json``, so
    that a partly downloaded copy is still recognised and the reader can say what is missing.
    """
    location = _locate(path)
    return None if location is None else location.data_dir


def is_arctic_folder(path: Path) -> bool:
    """True when ``path`` is an ARCTIC folder at one of the accepted levels."""
    return _locate(path) is not None


def find_arctic_sequences(
    path: Path,
    subjects: tuple[str, ...] = (),
    sequences: tuple[str, ...] = (),
    *,
    require_all: bool = False,
) -> list[tuple[str, str]]:
    """The annotated ARCTIC videos at ``path`` as sorted ``(subject, sequence)`` pairs.

    A video is a ``raw_seqs/sNN/<seq>.mano.npy`` file. A subject or sequence folder as ``path``
    keeps only that subject or sequence.

    Args:
        path: an ARCTIC folder at any accepted level.
        subjects: keep only these subjects (``"s05"``); all when empty.
        sequences: keep only these sequences, by name (``"box_grab_01"``, in every kept
            subject) or with their subject (``"s05/box_grab_01"``); all when empty.
        require_all: raise when a requested subject or sequence matches nothing (for split
            presets that must be complete); otherwise only when nothing matches at all.
    """
    location = _locate(path)
    if location is None:
        raise file_error(
            Path(path),
            "is not an ARCTIC folder (no data/arctic_data/data with raw_seqs/ inside)",
            "pass the ARCTIC root, its data/arctic_data/data folder, or a subject folder such as raw_seqs/s05",
        )
    raw = location.data_dir / "raw_seqs"
    if not raw.is_dir():
        raise file_error(raw, "not found (ARCTIC's MANO annotations live there)", _redownload(_RAW_SEQS))
    found = sorted(
        (file.parent.name, file.name[: -len(".mano.npy")])
        for file in raw.glob("s*/*.mano.npy")
        if _SUBJECT.fullmatch(file.parent.name)
    )
    if location.subject is not None:
        found = [(sid, seq) for sid, seq in found if sid == location.subject]
    if location.sequence is not None:
        found = [(sid, seq) for sid, seq in found if seq == location.sequence]
    if subjects:
        found = [(sid, seq) for sid, seq in found if sid in subjects]
    if sequences:
        found = [(sid, seq) for sid, seq in found if seq in sequences or f"{sid}/{seq}" in sequences]
    if require_all:
        unmatched = [s for s in subjects if not any(sid == s for sid, _ in found)]
        unmatched += [s for s in sequences if not any(s in (seq, f"{sid}/{seq}") for sid, seq in found)]
        if unmatched:
            raise file_error(
                raw,
                f"has no annotated sequence for {', '.join(unmatched)}",
                _redownload(f"{_IMAGES_ZIPS} and {_RAW_SEQS}"),
            )
    if not found:
        wanted = ", ".join([*subjects, *sequences, *filter(None, (location.subject, location.sequence))])
        raise file_error(
            raw,
            "holds no annotated sequence (sNN/<seq>.mano.npy)" + (f" matching {wanted}" if wanted else ""),
            f"check the subject and sequence names, or {_redownload(_RAW_SEQS)}",
        )
    return found


def _object_file(data_dir: Path, sid: str, seq: str) -> Path:
    return Path(data_dir) / "raw_seqs" / sid / f"{seq}.object.npy"


def _object_params(file: Path) -> np.ndarray:
    """A ``<seq>.object.npy``: per annotated frame articulation, rotation, translation (F, 7)."""
    if not file.is_file():
        raise file_error(file, "not found", _redownload(_RAW_SEQS))
    try:
        params = np.asarray(np.load(file, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, EOFError) as exc:
        raise file_error(file, f"cannot be read as an array ({exc})", _redownload(_RAW_SEQS)) from exc
    if params.ndim != 2 or params.shape[1] != 7 or len(params) == 0:
        raise file_error(file, f"has shape {params.shape} instead of (frames, 7)", _redownload(_RAW_SEQS))
    return params


def articulation_range(data_dir: Path, sid: str, seq: str) -> float:
    """How far (radians, max minus min) the object's articulation moves in one video.

    Reads column 0 of ``raw_seqs/<sid>/<seq>.object.npy``; near zero for an object that stays
    rigid throughout, which is how the paper chose its ARCTIC test videos.
    """
    return float(np.ptp(_object_params(_object_file(data_dir, sid, seq))[:, 0]))


def _read_object(data_dir: Path, sid: str, seq: str, indices: np.ndarray, num_annotated: int) -> ObjectTrack | None:
    """The sequence's object at the selected annotation ``indices``; None without its pose or template."""
    folder = data_dir / "meta" / "object_vtemplates" / seq.split("_")[0]
    mesh_file, parts_file, params_file = folder / "mesh.obj", folder / "parts.json", _object_file(data_dir, sid, seq)
    if not (params_file.is_file() and mesh_file.is_file() and parts_file.is_file()):
        return None
    params = _object_params(params_file)
    if len(params) != num_annotated:
        raise file_error(
            params_file,
            f"holds {len(params)} object poses but {seq}.mano.npy annotates {num_annotated} frames",
            _redownload(_RAW_SEQS),
        )
    try:
        mesh = trimesh.load(mesh_file, process=False, force="mesh")
        is_bottom = np.asarray(json.loads(parts_file.read_text()), dtype=bool)
    except (OSError, ValueError) as exc:
        raise file_error(folder, f"holds an unreadable mesh.obj or parts.json ({exc})", _redownload(_META)) from exc
    if is_bottom.shape != (len(mesh.vertices),):
        raise file_error(parts_file, f"labels {is_bottom.size} vertices but mesh.obj has {len(mesh.vertices)}", _redownload(_META))
    return arctic_object_track(np.asarray(mesh.vertices), np.asarray(mesh.faces), is_bottom, params[indices])


def _load_dict(file: Path, what: str) -> dict[str, Any]:
    """An ARCTIC ``.npy`` holding a pickled dict (the dataset's own format needs allow_pickle)."""
    if not file.is_file():
        raise file_error(file, f"not found (ARCTIC's {what})", _redownload(_RAW_SEQS))
    try:
        value = np.load(file, allow_pickle=True)
        data = value.item() if isinstance(value, np.ndarray) and value.shape == () else None
    except (OSError, ValueError, EOFError, TypeError, AttributeError, ImportError, pickle.UnpicklingError) as exc:
        raise file_error(file, f"cannot be read as ARCTIC's {what} ({exc})", _redownload(_RAW_SEQS)) from exc
    if not isinstance(data, dict):
        raise file_error(file, f"does not hold a dictionary as ARCTIC's {what} does", _redownload(_RAW_SEQS))
    return data


def _array(
    data: dict[str, Any],
    key: str,
    shape: tuple[int | None, ...],
    file: Path,
    where: str = "",
    fix: str = _redownload(_RAW_SEQS),
) -> np.ndarray:
    """``data[key]`` as float64 of ``shape`` (None = any size), or an error naming the file."""
    if key not in data:
        raise file_error(file, f"has no '{key}'{where} (it holds {', '.join(map(str, data)) or 'nothing'})", fix)
    try:
        value = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise file_error(file, f"'{key}'{where} is not numeric ({exc})", fix) from exc
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("F" if s is None else str(s) for s in shape) + ")"
        raise file_error(file, f"'{key}'{where} has shape {value.shape} instead of {expected}", fix)
    return value


@dataclass(frozen=True)
class _HandParams:
    rot: Float[np.ndarray, "F 3"]
    pose: Float[np.ndarray, "F 45"]
    trans: Float[np.ndarray, "F 3"]
    shape: Float[np.ndarray, "F 10"]


def _read_mano_params(file: Path) -> dict[str, _HandParams]:
    data = _load_dict(file, "MANO annotation")
    hands = {}
    for side in _HANDS:
        hand = data.get(side)
        if not isinstance(hand, dict):
            held = ", ".join(map(str, data)) or "nothing"
            raise file_error(file, f"has no '{side}' hand dictionary (it holds {held})", _redownload(_RAW_SEQS))
        where = f" of the {side} hand"
        rot = _array(hand, "rot", (None, 3), file, where)
        num_frames = len(rot)
        pose = _array(hand, "pose", (num_frames, 45), file, where)
        trans = _array(hand, "trans", (num_frames, 3), file, where)
        shape = np.asarray(hand.get("shape", np.zeros(0)))
        shape = _array(hand, "shape", (10,) if shape.ndim == 1 else (num_frames, 10), file, where)
        hands[side] = _HandParams(rot, pose, trans, np.broadcast_to(shape, (num_frames, 10)))
    if len(hands["left"].rot) != len(hands["right"].rot):
        raise file_error(
            file,
            f"annotates {len(hands['left'].rot)} frames of the left hand but {len(hands['right'].rot)} of the right",
            _redownload(_RAW_SEQS),
        )
    return hands


@dataclass(frozen=True)
class _EgoCamera:
    w2c: Float[np.ndarray, "F 4 4"]
    K: Float[np.ndarray, "3 3"]
    dist8: Float[np.ndarray, " 8"]


def _read_egocam(file: Path) -> _EgoCamera:
    data = _load_dict(file, "egocentric camera")
    rotation = _array(data, "R_k_cam_np", (None, 3, 3), file)
    num_frames = len(rotation)
    t_shape = (num_frames, 3, 1) if np.ndim(data.get("T_k_cam_np")) == 3 else (num_frames, 3)
    translation = _array(data, "T_k_cam_np", t_shape, file)
    K = _array(data, "intrinsics", (3, 3), file)
    dist8 = _array(data, "dist8", (8,) if np.ndim(data.get("dist8")) == 1 else (1, 8), file).reshape(8)
    w2c = np.tile(np.eye(4), (num_frames, 1, 1))
    w2c[:, :3, :3] = rotation
    w2c[:, :3, 3] = translation.reshape(num_frames, 3)
    for key, value in (("R_k_cam_np", rotation), ("T_k_cam_np", translation), ("intrinsics", K), ("dist8", dist8)):
        if not np.isfinite(value).all():
            raise file_error(file, f"'{key}' holds a NaN or infinite value", _redownload(_RAW_SEQS))
    return _EgoCamera(w2c=w2c, K=K, dist8=dist8)


def _read_misc(data_dir: Path, sid: str) -> dict[str, Any]:
    file = data_dir / "meta" / "misc.json"
    if not file.is_file():
        raise file_error(file, "not found (it holds each subject's image offsets and cameras)", _redownload(_META))
    try:
        misc = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(file, f"cannot be read as JSON ({exc})", _redownload(_META)) from exc
    entry = misc.get(sid) if isinstance(misc, dict) else None
    if not isinstance(entry, dict):
        raise file_error(file, f"has no entry for subject {sid}", _redownload(_META))
    if not isinstance(entry.get("ioi_offset"), int):
        raise file_error(file, f"the entry of subject {sid} has no integer 'ioi_offset'", _redownload(_META))
    return entry


def _image_size(file: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(file) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise file_error(
            file, f"cannot be read as an image ({exc})", _redownload(f"{_IMAGES_ZIPS} of this sequence")
        ) from exc


def _numbered_images(folder: Path) -> dict[int, Path]:
    """Image files named by a frame number (``00123.jpg``), by number."""
    return {int(file.stem): file for file in list_images(folder) if file.stem.isdigit()}


def _ego_folder(data_dir: Path, sid: str, seq: str, cropped: bool) -> Path:
    if not cropped:
        folder = data_dir / _IMAGES / sid / seq / "0"
        if not folder.is_dir():
            raise file_error(
                folder,
                "not found (the egocentric frames of this video)",
                f"{_redownload(_IMAGES_ZIPS)}, or read cropped_images with cropped=True",
            )
        return folder
    folders = [data_dir / name / sid / seq / "0" for name in _CROPPED]
    for folder in folders:
        if folder.is_dir():
            return folder
    raise file_error(
        folders[0],
        "not found (the egocentric frames of this video)",
        f"{_redownload(_CROPPED_ZIPS)}, or read the full images with cropped=False",
    )


def _select_frames(
    images: dict[int, Path], ioi_offset: int, num_annotated: int, trim: int, folder: Path, mano_file: Path
) -> tuple[list[Path], list[int]]:
    """The frames kept: annotated (image number - ioi_offset in [0, F)) and outside the trimmed ends."""
    first, stop = trim, num_annotated - trim
    if stop <= first:
        raise file_error(
            mano_file,
            f"annotates {num_annotated} frames, too few to drop the first and last {trim}",
            "read it with a smaller trim",
        )
    missing = [index for index in range(first, stop) if index + ioi_offset not in images]
    if missing:
        raise file_error(
            folder,
            f"has no image for {len(missing)} of the {stop - first} annotated frames kept "
            f"(the first missing is number {missing[0] + ioi_offset:05d}, annotation {missing[0]} of {num_annotated} "
            f"in {mano_file.name}, ioi_offset {ioi_offset})",
            _redownload(f"{_IMAGES_ZIPS} of this sequence"),
        )
    indices = list(range(first, stop))
    return [images[index + ioi_offset] for index in indices], indices


def undistortion_cache_key(K: Float[np.ndarray, "3 3"], dist8: Float[np.ndarray, " 8"], source: Path) -> str:
    """Names one undistorted frame in the cache: changes with K, the distortion, and the source file
    (its path, size and modification time), so a stale cached frame is never served."""
    stat = source.stat()
    digest = hashlib.sha1(_CACHE_VERSION)
    digest.update(np.ascontiguousarray(K, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(dist8, dtype=np.float64).tobytes())
    digest.update(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _write_atomically(file: Path, data: bytes) -> None:
    """Writes to a hidden temporary file beside ``file``, then renames: readers never see half a file."""
    handle, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def undistort_frames(
    sources: list[Path],
    K: Float[np.ndarray, "3 3"],
    dist8: Float[np.ndarray, " 8"],
    cache_folder: Path,
    description: str = "Undistorting frames",
) -> list[Path]:
    """Undistorted copies of ``sources`` (``cv2.undistort(image, K, dist8)``, same K as a pinhole), cached.

    Each frame is undistorted once into ``cache_folder`` under a name keyed by
    :func:`undistortion_cache_key`; later calls return the cached files without reading the
    sources. Copies of the same frames made with other keys are deleted. Files are JPEG
    (quality 95, no chroma subsampling): the sources are JPEG already, and a lossless cache of
    the 2800x2000 frames would take several times the dataset's own size.
    """
    targets = [cache_folder / f"{src.stem}.{undistortion_cache_key(K, dist8, src)}.jpg" for src in sources]
    todo = [(src, dst) for src, dst in zip(sources, targets) if not dst.is_file()]
    if todo:
        cache_folder.mkdir(parents=True, exist_ok=True)
    size: tuple[int, ...] | None = None
    with progress_bar(disable=not todo) as progress:
        for src, dst in progress.track(todo, description=description):
            image = cv2.imread(str(src), cv2.IMREAD_COLOR)
            if image is None:
                raise file_error(src, "cannot be decoded as an image", _redownload(f"{_IMAGES_ZIPS} of this sequence"))
            if size is not None and image.shape != size:
                problem = f"is {image.shape[1]}x{image.shape[0]} while the frames before it are {size[1]}x{size[0]}"
                raise file_error(src, problem, _redownload(f"{_IMAGES_ZIPS} of this sequence"))
            size = image.shape
            ok, encoded = cv2.imencode(".jpg", cv2.undistort(image, K, dist8), _JPEG_PARAMS)
            if not ok:
                raise RuntimeError(f"OpenCV could not encode the undistorted {src} as JPEG")
            try:
                _write_atomically(dst, encoded.tobytes())
            except OSError as exc:
                raise file_error(
                    cache_folder,
                    f"cannot hold the undistorted frames ({exc})",
                    "free some space there or pass another cache_dir",
                ) from exc
    if cache_folder.is_dir():
        keep = {dst.name for dst in targets}
        stems = {src.stem for src in sources}
        for old in cache_folder.glob("*.jpg"):
            if old.name not in keep and old.name.split(".")[0] in stems:
                old.unlink(missing_ok=True)
    return targets


def _load_templates(mano_dir: Path) -> dict[str, HandTemplate]:
    """ARCTIC's MANO layers: ``flat_hand_mean=False``, no left-hand shapedirs fix, float64."""
    return {
        side: load_template("mano", side, mano_dir, flat_hand_mean=False).to(dtype=torch.float64) for side in _HANDS
    }


def _gt_joints(
    templates: dict[str, HandTemplate], hands: dict[str, _HandParams], indices: list[int]
) -> tuple[Float[np.ndarray, "F 2 21 3"], Bool[np.ndarray, "F 2"]]:
    """World-frame ground-truth joints of the annotated frames ``indices``, as ARCTIC makes them
    (``MANO(use_pca=False, flat_hand_mean=False)``: pose relative to ``hands_mean``), 21 joints
    in OpenPose order. A hand with non-finite parameters in a frame is invalid there (zeros)."""
    joints = np.zeros((len(indices), 2, 21, 3))
    valid = np.zeros((len(indices), 2), bool)
    for side, slot in _HANDS.items():
        p = hands[side]
        params = [np.asarray(a[indices], np.float64) for a in (p.rot, p.pose, p.shape, p.trans)]
        finite = np.all([np.isfinite(a).all(axis=1) for a in params], axis=0)
        rot, pose, shape, trans = (torch.from_numpy(np.where(finite[:, None], a, 0.0)) for a in params)
        with torch.no_grad():  # in chunks, so that memory stays bounded however long the video
            posed = [
                hand_forward_axis_angle(
                    templates[side], *(a[i : i + _MANO_BATCH] for a in (rot, pose, shape, trans))
                ).joints
                for i in range(0, len(indices), _MANO_BATCH)
            ]
        joints[:, slot] = np.where(finite[:, None, None], torch.cat(posed).numpy(), 0.0)
        valid[:, slot] = finite
    return joints, valid


def _static_views(
    entry: dict[str, Any], misc_file: Path, data_dir: Path, sid: str, seq: str, frame_ids: list[str]
) -> dict[str, SequenceView]:
    """Views 1-8 from ``misc.json``'s ``world2cam``/``intris_mat`` and the full-resolution ``images/``.

    A view is kept only when every kept frame has an image in it (views are for evaluation
    only; a partly downloaded view is left out rather than misaligned).
    """
    if "world2cam" not in entry or "intris_mat" not in entry:
        return {}
    where, fix = f" of subject {sid}", _redownload(_META)
    world2cam = _array(entry, "world2cam", (NUM_STATIC_VIEWS, 4, 4), misc_file, where, fix)
    intrinsics = _array(entry, "intris_mat", (NUM_STATIC_VIEWS, 3, 3), misc_file, where, fix)
    c2w = invert_rigid(torch.from_numpy(world2cam)).numpy()
    num_frames = len(frame_ids)
    views = {}
    for view in range(1, NUM_STATIC_VIEWS + 1):
        folder = data_dir / _IMAGES / sid / seq / str(view)
        if not folder.is_dir():
            continue
        paths = [folder / f"{frame_id}.jpg" for frame_id in frame_ids]
        if not all(p.is_file() for p in paths):
            continue
        width, height = _image_size(paths[0])
        cameras = SequenceCameras(
            K=np.repeat(intrinsics[view - 1][None], num_frames, axis=0).astype(np.float32),
            c2w=np.repeat(c2w[view - 1][None], num_frames, axis=0).astype(np.float32),
            fps=ARCTIC_FPS,
            width=width,
            height=height,
        )
        views[f"view{view}"] = SequenceView(name=f"view{view}", image_paths=paths, cameras=cameras)
    return views


def _check_ego_size(
    entry: dict[str, Any], misc_file: Path, sid: str, first_frame: Path, cropped: bool
) -> tuple[int, int]:
    """The egocentric frame size, checked against ``misc.json``'s ``image_size`` when it has one."""
    width, height = _image_size(first_frame)
    sizes = entry.get("image_size")
    if isinstance(sizes, list) and sizes and isinstance(sizes[0], list) and len(sizes[0]) == 2:
        full_w, full_h = (int(v) for v in sizes[0])
        expected = (int(full_w * CROPPED_SCALE), int(full_h * CROPPED_SCALE)) if cropped else (full_w, full_h)
        if (width, height) != expected:
            raise file_error(
                first_frame,
                f"is {width}x{height} but {misc_file} gives view 0 of subject {sid} as {full_w}x{full_h}"
                + (f" ({expected[0]}x{expected[1]} cropped)" if cropped else ""),
                _redownload(f"{_CROPPED_ZIPS if cropped else _IMAGES_ZIPS} of subject {sid}"),
            )
    return width, height


def read_arctic_sequence(
    data_dir: Path,
    sid: str,
    seq: str,
    mano_dir: Path,
    *,
    cropped: bool = False,
    trim: int = 100,
    hamer_root: Path | None = None,
    cache_dir: Path | None = None,
    box_margin: float = 0.2,
) -> DatasetSequence:
    """One ARCTIC video (egocentric view 0) with cameras, ground truth, boxes and static views.

    Args:
        data_dir: ARCTIC's ``data/arctic_data/data`` folder (:func:`arctic_data_dir`).
        sid: subject, ``"s05"``.
        seq: sequence, ``"box_grab_01"``.
        mano_dir: folder of ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (ground truth).
        cropped: read ``cropped_images`` (840x600, K's first two rows scaled by 0.3) instead of
            the full 2800x2000 ``images``.
        trim: annotated frames dropped at each end (the paper drops 100).
        hamer_root: folder of per-video HaMeR folders ``<hamer_root>/<sid>_<seq>``; default
            ``<data_dir>/hamer/<sid>/<seq>``.
        cache_dir: where undistorted frames go; default
            ``hand4dgs_ns.paths.cache_root() / "arctic_undistorted"``.
        box_margin: boxes from projected joints grow by this share of their size per side.
    """
    if trim < 0:
        raise ValueError(f"read_arctic_sequence: trim must be >= 0, got {trim}")
    data_dir = Path(data_dir)
    raw = data_dir / "raw_seqs" / sid
    mano_file, egocam_file = raw / f"{seq}.mano.npy", raw / f"{seq}.egocam.dist.npy"
    misc_file = data_dir / "meta" / "misc.json"
    entry = _read_misc(data_dir, sid)
    hands = _read_mano_params(mano_file)
    egocam = _read_egocam(egocam_file)
    templates = _load_templates(mano_dir)  # before undistorting: a missing MANO file should not wait for that
    num_annotated = len(hands["right"].rot)
    if len(egocam.w2c) != num_annotated:
        raise file_error(
            egocam_file,
            f"holds {len(egocam.w2c)} camera poses but {mano_file.name} annotates {num_annotated} frames",
            _redownload(_RAW_SEQS),
        )

    folder = _ego_folder(data_dir, sid, seq, cropped)
    sources, indices = _select_frames(
        _numbered_images(folder), entry["ioi_offset"], num_annotated, trim, folder, mano_file
    )
    frame_ids = [src.stem for src in sources]
    width, height = _check_ego_size(entry, misc_file, sid, sources[0], cropped)
    views = _static_views(entry, misc_file, data_dir, sid, seq, frame_ids)
    K = egocam.K.copy()
    if cropped:
        K[:2] *= CROPPED_SCALE
    cache_folder = (Path(cache_dir) if cache_dir is not None else cache_root() / ARCTIC_UNDISTORTED_DIR) / sid / seq
    cache_folder = cache_folder / ("cropped_images" if cropped else "images")
    image_paths = undistort_frames(
        sources, K, egocam.dist8, cache_folder, description=f"Undistorting ARCTIC {sid}/{seq}"
    )

    w2c = torch.from_numpy(egocam.w2c[indices])
    c2w = invert_rigid(w2c)
    gt_joints, gt_valid = _gt_joints(templates, hands, indices)
    p_cam = transform_points(w2c[:, None], torch.from_numpy(gt_joints))
    uv = project_points(torch.from_numpy(K), p_cam).numpy()
    in_front = (p_cam[..., 2] > 1e-3).all(dim=-1).numpy()
    bbox, box_valid = boxes_from_joints(uv, gt_valid & in_front, width, height, margin=box_margin)

    objects = _read_object(data_dir, sid, seq, np.asarray(indices), num_annotated)
    num_frames = len(indices)
    name = f"{sid}_{seq}"
    return DatasetSequence(
        dataset="arctic",
        name=name,
        root=data_dir / _IMAGES / sid / seq,
        image_paths=image_paths,
        frame_ids=frame_ids,
        cameras=SequenceCameras(
            K=np.repeat(K[None], num_frames, axis=0).astype(np.float32),
            c2w=c2w.numpy().astype(np.float32),
            fps=ARCTIC_FPS,
            width=width,
            height=height,
        ),
        bbox=bbox,
        box_valid=box_valid,
        gt_joints=gt_joints.astype(np.float32),
        gt_valid=gt_valid,
        views=views,
        hamer_dir=Path(hamer_root) / name if hamer_root is not None else data_dir / "hamer" / sid / seq,
        objects=objects,
    )
