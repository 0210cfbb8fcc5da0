"""The project's sequence format v1: reading, validating and writing one folder per video.

Every dataset the project supports is turned into this layout (docs/formats.md section 1)::

    <seq>/
      rgb/000000.png ...   frames, all the same size, sorted by name (png or jpg)
      cameras.npz          K (3,3) or (F,3,3); c2w (F,4,4) camera-to-world, OpenCV axes,
                           metres; fps () (default 30)
      hands.npz            bbox (F,2,4) xyxy pixels; valid (F,2) bool;
                           pseudo_joints (F,2,21,3) world frame, OpenPose order;
                           optional pseudo_verts (F,2,V,3), gt_joints (F,2,21,3), gt_valid (F,2)
      masks/000000.png     optional uint8: 0 background, 1 left hand, 2 right hand
      views/<name>/        optional extra static cameras: rgb/ + cameras.npz, frames aligned
                           by index with the main video

Hand slot 0 is the left hand, slot 1 the right hand. Only ``rgb/``, ``cameras.npz`` and
``hands.npz`` are required. Arrays are read into float32 (bool for the valid flags) and
written with exactly the documented keys and dtypes.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import cv2
import numpy as np
from jaxtyping import Bool, Float
from PIL import Image, UnidentifiedImageError

from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.output_folder import partial_folder
from hand4dgs_ns.progress import progress_bar

RGB_DIR = "rgb"
MASKS_DIR = "masks"
VIEWS_DIR = "views"
CAMERAS_FILE = "cameras.npz"
HANDS_FILE = "hands.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 30.0
NUM_JOINTS = 21
HAND_SIDES = ("left", "right")
"""The hand slots' order: slot 0 is the left hand, slot 1 the right, in every per-hand array."""
MASK_BACKGROUND, MASK_LEFT, MASK_RIGHT, MASK_OCCLUDER = 0, 1, 2, 3
"""Mask labels: background, left hand, right hand, and an occluder (something in front of where a
hand may be, such as a forearm or a held object: neither hand nor background to the image loss)."""
ArrayT = TypeVar("ArrayT")


def hand_pixels(mask: ArrayT) -> ArrayT:
    """Where a mask (a numpy array or a torch tensor of labels) shows a hand: labels 1 and 2 only, so any later
    label (such as an occluder's) counts as not-hand."""
    return (mask == MASK_LEFT) | (mask == MASK_RIGHT)


def occluder_pixels(mask: ArrayT) -> ArrayT:
    """Where a mask marks an occluder (label 3)."""
    return mask == MASK_OCCLUDER


# c2w rotations are stored as float32 by most tools: allow that much rounding.
_RIGID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SequenceCameras:
    """Per-frame pinhole cameras of one video (OpenCV axes, metres)."""

    K: Float[np.ndarray, "F 3 3"]
    """Intrinsics in pixels, one per frame (a single (3,3) K in the file is broadcast)."""
    c2w: Float[np.ndarray, "F 4 4"]
    """Camera-to-world rigid transforms, OpenCV camera axes, metres."""
    fps: float
    """Frame rate of the video."""
    width: int
    """Frame width in pixels."""
    height: int
    """Frame height in pixels."""

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return int(self.c2w.shape[0])


@dataclass(frozen=True)
class SequenceHands:
    """Per-frame hand annotations of one video; slot 0 = left hand, 1 = right hand."""

    bbox: Float[np.ndarray, "F 2 4"]
    """Hand boxes, xyxy pixels."""
    valid: Bool[np.ndarray, "F 2"]
    """Hand present and usable in that frame; other slots hold meaningless values."""
    pseudo_joints: Float[np.ndarray, "F 2 21 3"]
    """Pseudo-label joints, world frame, metres, OpenPose order."""
    pseudo_verts: Float[np.ndarray, "F 2 V 3"] | None = None
    """Optional pseudo-label vertices, world frame, in the hand template's topology."""
    gt_joints: Float[np.ndarray, "F 2 21 3"] | None = None
    """Optional ground-truth joints for evaluation only (never used for training)."""
    gt_valid: Bool[np.ndarray, "F 2"] | None = None
    """Which ground-truth hands are annotated; all of them when the file has no gt_valid."""

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return int(self.valid.shape[0])


@dataclass(frozen=True)
class SequenceView:
    """An extra static camera filming the same video, for novel-view evaluation."""

    name: str
    """Folder name under ``views/``."""
    image_paths: list[Path]
    """One frame per frame of the main video, aligned by index."""
    cameras: SequenceCameras
    """The view's cameras (one per frame, usually all equal)."""
    mask_paths: list[Path] | None = None
    """Optional hand masks of the view's frames (labels as the main video's), for novel-view metrics on hand crops."""


@dataclass(frozen=True)
class Sequence:
    """One validated sequence folder."""

    root: Path
    """The sequence folder."""
    name: str
    """The folder's name."""
    image_paths: list[Path]
    """Frames ``rgb/*``, sorted by name."""
    mask_paths: list[Path] | None
    """Hand masks ``masks/*.png`` (0 background, 1 left, 2 right) aligned with the frames, or None."""
    cameras: SequenceCameras
    """Per-frame cameras of the main (egocentric) video."""
    hands: SequenceHands
    """Per-frame hand annotations."""
    views: dict[str, SequenceView]
    """Extra static cameras by name, sorted by name."""

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return len(self.image_paths)



def is_sequence_folder(path: Path) -> bool:
    """True when ``path`` looks like a sequence folder (holds ``rgb/``, ``cameras.npz`` or ``hands.npz``).

    Any one of the three required entries is enough, so that a damaged sequence is still
    recognised and :func:`read_sequence` can say what is missing.
    """
    path = Path(path)
    return path.is_dir() and (
        (path / RGB_DIR).is_dir() or (path / CAMERAS_FILE).is_file() or (path / HANDS_FILE).is_file()
    )


def find_sequences(path: Path) -> list[Path]:
    """The sequence folders at ``path``: the folder itself, or its sequence sub-folders sorted by name.

    Hidden folders (such as a :class:`SequenceWriter`'s unfinished output) are skipped.
    """
    path = Path(path)
    if not path.is_dir():
        raise file_error(path, "no such folder", "point to a sequence folder or a folder of sequence folders")
    if is_sequence_folder(path):
        return [path]
    found = sorted(p for p in path.iterdir() if not p.name.startswith(".") and is_sequence_folder(p))
    if not found:
        raise file_error(
            path,
            f"no sequence folder found (a folder holding {RGB_DIR}/, {CAMERAS_FILE} and {HANDS_FILE})",
            "point to a sequence folder or a folder of sequence folders",
        )
    return found


def list_images(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files of ``folder`` (by suffix, hidden files skipped), sorted by name."""
    suffixes = tuple(suffixes)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _image_size(file: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(file) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise file_error(file, f"cannot be read as an image ({exc})", "replace it with a valid PNG or JPEG file") from exc


def _decode_image(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as image:
            image.load()
            return np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise file_error(file, f"cannot be decoded ({exc})", "replace it with a valid PNG or JPEG file") from exc


def read_rgb(path: Path) -> np.ndarray:
    """A video frame as (H, W, 3) uint8 RGB; one sentence naming the file if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise Hand4DGSError(f"{path} is not a readable image: replace it with the frame, readable and of the same size (a sequence needs all its frames).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _load_npz(file: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(file, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            return {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise file_error(
            file, f"cannot be read as an .npz archive ({exc})", "rewrite it with numpy.savez holding plain arrays"
        ) from exc


def _require(arrays: Mapping[str, np.ndarray], key: str, file: Path) -> np.ndarray:
    if key not in arrays:
        present = ", ".join(sorted(arrays)) or "nothing"
        raise file_error(
            file, f"has no '{key}' array (it holds {present})", f"add '{key}' as docs/formats.md section 1 documents"
        )
    return arrays[key]


def _float_array(value: np.ndarray, key: str, shape: tuple[int | None, ...], file: Path, what: str) -> np.ndarray:
    """Checks ``value`` against ``shape`` (None = any size) and returns it as float32."""
    value = np.asarray(value)
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape, strict=True)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise file_error(file, f"'{key}' has shape {tuple(value.shape)} but must be {expected}", f"store {what}")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise file_error(file, f"'{key}' has dtype {value.dtype}", f"store {what} as float numbers")
    return value.astype(np.float32)


def _check_frame_count(arrays: Mapping[str, np.ndarray], keys: Iterable[str], file: Path, num_frames: int) -> None:
    """Names a frame-count mismatch as such, before the shape checks would call it a wrong shape."""
    for key in keys:
        value = arrays.get(key)
        if value is not None and np.ndim(value) >= 2 and np.shape(value)[0] != num_frames:
            raise file_error(
                file,
                f"'{key}' has {np.shape(value)[0]} frames but {RGB_DIR}/ holds {num_frames}",
                "store one entry per frame of the video, or add the missing frames",
            )


def _bool_array(value: np.ndarray, key: str, shape: tuple[int, ...], file: Path, what: str) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != shape:
        raise file_error(file, f"'{key}' has shape {tuple(value.shape)} but must be {shape}", f"store {what}")
    if value.dtype != np.bool_:
        is_number = np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)
        if not is_number or not np.isin(value, (0, 1)).all():
            raise file_error(file, f"'{key}' has dtype {value.dtype} with values other than 0/1", f"store {what} as bool")
    return value.astype(bool)


def _check_finite(value: np.ndarray, key: str, file: Path, where: np.ndarray | None = None) -> None:
    """Raises when a value is NaN or infinite (only where ``where`` is set, broadcast over the tail)."""
    bad = ~np.isfinite(value)
    if where is not None:
        bad &= where.reshape(where.shape + (1,) * (value.ndim - where.ndim))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise file_error(file, f"'{key}' holds a NaN or infinite value at index {index}", "store finite numbers")


def _validated_cameras(
    arrays: Mapping[str, np.ndarray], file: Path, num_frames: int, width: int, height: int
) -> SequenceCameras:
    """Checks the arrays of a ``cameras.npz`` against ``num_frames`` frames of ``width`` x ``height``."""
    F = num_frames
    per_frame = f"one per frame ({F} frames in {RGB_DIR}/)"
    _check_frame_count(arrays, ("c2w",) + (("K",) if np.ndim(arrays.get("K")) == 3 else ()), file, F)
    K = np.asarray(_require(arrays, "K", file))
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (F, 3, 3))
    K = _float_array(K, "K", (F, 3, 3), file, f"a (3,3) pinhole matrix or {per_frame}")
    c2w = _float_array(
        _require(arrays, "c2w", file), "c2w", (F, 4, 4), file, f"a 4x4 camera-to-world matrix {per_frame}"
    )
    _check_finite(K, "K", file)
    _check_finite(c2w, "c2w", file)
    pinhole = (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0) & (np.abs(K[:, 0, 1]) < 1e-6) & (np.abs(K[:, 1, 0]) < 1e-6)
    pinhole &= np.abs(K[:, 2] - np.array([0.0, 0.0, 1.0], np.float32)).max(axis=-1) < 1e-6
    if not pinhole.all():
        frame = int(np.argmin(pinhole))
        raise file_error(
            file,
            f"'K' of frame {frame} is not a pinhole matrix [[fx,0,cx],[0,fy,cy],[0,0,1]] with positive focal lengths",
            "store intrinsics in pixels without skew",
        )
    rotations = c2w[:, :3, :3].astype(np.float64)
    orthonormal_error = np.abs(rotations.transpose(0, 2, 1) @ rotations - np.eye(3)).max(axis=(1, 2))
    bottom_error = np.abs(c2w[:, 3] - np.array([0.0, 0.0, 0.0, 1.0], np.float32)).max(axis=-1)
    rigid = (orthonormal_error < _RIGID_TOLERANCE) & (bottom_error < 1e-6) & (np.linalg.det(rotations) > 0)
    if not rigid.all():
        frame = int(np.argmin(rigid))
        raise file_error(
            file,
            f"'c2w' of frame {frame} is not a rigid transform (rotation, translation, last row 0 0 0 1)",
            "store camera-to-world poses in metres without scale or shear",
        )
    fps = DEFAULT_FPS
    if "fps" in arrays:
        fps_array = np.asarray(arrays["fps"])
        if fps_array.size != 1 or not np.issubdtype(fps_array.dtype, np.number):
            raise file_error(file, f"'fps' has shape {fps_array.shape}", "store the frame rate as one number")
        fps = float(fps_array.reshape(()))
        if not np.isfinite(fps) or fps <= 0:
            raise file_error(file, f"'fps' is {fps}", "store a positive frame rate")
    return SequenceCameras(K=np.ascontiguousarray(K), c2w=c2w, fps=fps, width=int(width), height=int(height))


def _validated_hands(arrays: Mapping[str, np.ndarray], file: Path, num_frames: int) -> SequenceHands:
    """Checks the arrays of a ``hands.npz`` against ``num_frames`` frames."""
    F = num_frames
    per_frame = f"one entry per frame ({F} frames in {RGB_DIR}/) and hand slot (0 left, 1 right)"
    _check_frame_count(arrays, ("bbox", "valid", "pseudo_joints", "pseudo_verts", "gt_joints", "gt_valid"), file, F)
    bbox = _float_array(_require(arrays, "bbox", file), "bbox", (F, 2, 4), file, f"xyxy boxes, {per_frame}")
    valid = _bool_array(_require(arrays, "valid", file), "valid", (F, 2), file, f"flags, {per_frame}")
    pseudo_joints = _float_array(
        _require(arrays, "pseudo_joints", file), "pseudo_joints", (F, 2, NUM_JOINTS, 3), file, f"21 joints, {per_frame}"
    )
    _check_finite(bbox, "bbox", file, where=valid)
    _check_finite(pseudo_joints, "pseudo_joints", file, where=valid)
    inverted = valid & ((bbox[..., 2] < bbox[..., 0]) | (bbox[..., 3] < bbox[..., 1]))
    if inverted.any():
        frame, slot = (int(i) for i in np.argwhere(inverted)[0])
        raise file_error(file, f"'bbox' of frame {frame} slot {slot} has x2 < x1 or y2 < y1", "store boxes as x1 y1 x2 y2")
    pseudo_verts = None
    if "pseudo_verts" in arrays:
        pseudo_verts = _float_array(
            arrays["pseudo_verts"], "pseudo_verts", (F, 2, None, 3), file, f"vertices, {per_frame}"
        )
        _check_finite(pseudo_verts, "pseudo_verts", file, where=valid)
    gt_joints = gt_valid = None
    if "gt_valid" in arrays and "gt_joints" not in arrays:
        raise file_error(file, "has 'gt_valid' but no 'gt_joints'", "add the ground-truth joints or drop 'gt_valid'")
    if "gt_joints" in arrays:
        gt_joints = _float_array(
            arrays["gt_joints"], "gt_joints", (F, 2, NUM_JOINTS, 3), file, f"21 joints, {per_frame}"
        )
        gt_valid = np.ones((F, 2), bool)
        if "gt_valid" in arrays:
            gt_valid = _bool_array(arrays["gt_valid"], "gt_valid", (F, 2), file, f"flags, {per_frame}")
        _check_finite(gt_joints, "gt_joints", file, where=gt_valid)
    return SequenceHands(
        bbox=bbox,
        valid=valid,
        pseudo_joints=pseudo_joints,
        pseudo_verts=pseudo_verts,
        gt_joints=gt_joints,
        gt_valid=gt_valid,
    )


def _read_frames(folder: Path, what: str) -> tuple[list[Path], int, int]:
    """Sorted frames of an ``rgb/`` folder and the size of the first one."""
    if not folder.is_dir():
        raise file_error(folder, "is missing", f"put the {what} frames there as 000000.png, 000001.png, ...")
    paths = list_images(folder)
    if not paths:
        raise file_error(
            folder, "holds no .png or .jpg frame", f"put the {what} frames there as 000000.png, 000001.png, ..."
        )
    width, height = _image_size(paths[0])
    return paths, width, height


def verify_frames(paths: list[Path], width: int, height: int, description: str) -> None:
    with progress_bar() as progress:
        for path in progress.track(paths, description=description):
            image = _decode_image(path)
            if image.shape[:2] != (height, width):
                raise file_error(
                    path, f"is {image.shape[1]}x{image.shape[0]} but the first frame is {width}x{height}", "resize it"
                )


def _check_masks(paths: list[Path], width: int, height: int) -> None:
    with progress_bar() as progress:
        for path in progress.track(paths, description=f"Checking masks of {paths[0].parent.parent.name}"):
            mask = _decode_image(path)
            if mask.ndim != 2 or mask.shape != (height, width):
                raise file_error(
                    path,
                    f"has shape {mask.shape} but must be one channel of {width}x{height}",
                    "save masks as single-channel uint8 PNG files the size of the frames",
                )
            _check_labels(mask, path)


def _check_labels(mask: np.ndarray, file: Path) -> None:
    if mask.max(initial=0) > MASK_OCCLUDER:
        raise file_error(file, f"holds the value {int(mask.max())}", "use 0 background, 1 left hand, 2 right hand, 3 occluder")


def _read_masks(root: Path, image_paths: list[Path]) -> list[Path] | None:
    """``root/masks/``'s masks, one per frame and named after it, or None without the folder."""
    if not (root / MASKS_DIR).is_dir():
        return None
    mask_paths = list_images(root / MASKS_DIR, (".png",))
    if len(mask_paths) != len(image_paths):
        raise file_error(
            root / MASKS_DIR,
            f"holds {len(mask_paths)} .png masks but {RGB_DIR}/ holds {len(image_paths)} frames",
            "give every frame a mask with the same name, or remove the folder",
        )
    for image_path, mask_path in zip(image_paths, mask_paths, strict=True):
        if image_path.stem != mask_path.stem:
            raise file_error(mask_path, f"does not match the frame {image_path.name}", "name each mask after its frame")
    return mask_paths


def _read_view(folder: Path, num_frames: int, check_frames: bool) -> SequenceView:
    image_paths, width, height = _read_frames(folder / RGB_DIR, f"view '{folder.name}'")
    if len(image_paths) != num_frames:
        raise file_error(
            folder / RGB_DIR,
            f"holds {len(image_paths)} frames but the main video has {num_frames}",
            "give every view one frame per frame of the main video, aligned by index",
        )
    cameras_file = folder / CAMERAS_FILE
    if not cameras_file.is_file():
        raise file_error(cameras_file, "is missing", "add the view's K and c2w as docs/formats.md section 1 documents")
    cameras = _validated_cameras(_load_npz(cameras_file), cameras_file, num_frames, width, height)
    mask_paths = _read_masks(folder, image_paths)
    if check_frames:
        verify_frames(image_paths, width, height, f"Checking view {folder.name}")
        if mask_paths is not None:
            _check_masks(mask_paths, width, height)
    return SequenceView(name=folder.name, image_paths=image_paths, cameras=cameras, mask_paths=mask_paths)


def read_sequence(path: Path, *, check_frames: bool = False) -> Sequence:
    """Reads and validates one sequence folder.

    Args:
        path: the sequence folder.
        check_frames: also decode every frame and mask (slow on long videos) to find corrupt
            files, wrong sizes and mask values outside 0-3 now rather than during training.
            Without it only the first frame's header is read.

    Raises:
        Hand4DGSError: one sentence naming the first problem found and the file it is in.
    """
    root = Path(path)
    if not root.is_dir():
        raise file_error(root, "no such folder", "point to a sequence folder holding rgb/, cameras.npz and hands.npz")
    image_paths, width, height = _read_frames(root / RGB_DIR, "video")
    num_frames = len(image_paths)

    cameras_file = root / CAMERAS_FILE
    if not cameras_file.is_file():
        raise file_error(cameras_file, "is missing", "add the per-frame K and c2w as docs/formats.md section 1 documents")
    cameras = _validated_cameras(_load_npz(cameras_file), cameras_file, num_frames, width, height)

    hands_file = root / HANDS_FILE
    if not hands_file.is_file():
        raise file_error(hands_file, "is missing", "add bbox, valid and pseudo_joints as docs/formats.md section 1 documents")
    hands = _validated_hands(_load_npz(hands_file), hands_file, num_frames)

    mask_paths = _read_masks(root, image_paths)

    views: dict[str, SequenceView] = {}
    if (root / VIEWS_DIR).is_dir():
        for folder in sorted(p for p in (root / VIEWS_DIR).iterdir() if p.is_dir() and not p.name.startswith(".")):
            views[folder.name] = _read_view(folder, num_frames, check_frames)

    if check_frames:
        verify_frames(image_paths, width, height, f"Checking frames of {root.name}")
        if mask_paths is not None:
            _check_masks(mask_paths, width, height)

    return Sequence(
        root=root,
        name=root.name,
        image_paths=image_paths,
        mask_paths=mask_paths,
        cameras=cameras,
        hands=hands,
        views=views,
    )


def _cameras_arrays(cameras: SequenceCameras) -> dict[str, np.ndarray]:
    return {"K": np.asarray(cameras.K), "c2w": np.asarray(cameras.c2w), "fps": np.asarray(cameras.fps)}


def _hands_arrays(hands: SequenceHands) -> dict[str, np.ndarray]:
    arrays = {"bbox": hands.bbox, "valid": hands.valid, "pseudo_joints": hands.pseudo_joints}
    optional = {"pseudo_verts": hands.pseudo_verts, "gt_joints": hands.gt_joints, "gt_valid": hands.gt_valid}
    arrays.update({key: value for key, value in optional.items() if value is not None})
    return {key: np.asarray(value) for key, value in arrays.items()}


def _save_cameras(file: Path, cameras: SequenceCameras) -> None:
    np.savez(
        file,
        K=cameras.K.astype(np.float32),
        c2w=cameras.c2w.astype(np.float32),
        fps=np.asarray(cameras.fps, dtype=np.float32),
    )


def _save_hands(file: Path, hands: SequenceHands) -> None:
    arrays = {
        "bbox": hands.bbox.astype(np.float32),
        "valid": hands.valid.astype(bool),
        "pseudo_joints": hands.pseudo_joints.astype(np.float32),
    }
    if hands.pseudo_verts is not None:
        arrays["pseudo_verts"] = hands.pseudo_verts.astype(np.float32)
    if hands.gt_joints is not None:
        arrays["gt_joints"] = hands.gt_joints.astype(np.float32)
        arrays["gt_valid"] = np.asarray(hands.gt_valid, dtype=bool)
    np.savez(file, **arrays)


def _frame_name(index: int) -> str:
    return f"{index:06d}.png"


class SequenceWriter:
    """Writes one sequence folder so that nothing half-written is ever left at ``out``.

    Everything goes into a hidden temporary folder beside ``out``; :meth:`finish` validates the
    arrays, writes the npz files and renames the folder to ``out``. Leaving the ``with`` block
    by an exception (or without calling :meth:`finish`) removes the temporary folder::

        with SequenceWriter(out) as writer:
            for rgb, mask in frames:
                writer.add_frame(rgb, mask)
            writer.finish(cameras, hands)
    """

    def __init__(self, out: Path, overwrite: bool = False) -> None:
        """``overwrite`` replaces an existing sequence folder (never any other folder or file)."""
        self.out = Path(out)
        self.overwrite = overwrite
        self._tmp: Path | None = None
        self._finished = False
        self._num_frames = 0
        self._has_masks: bool | None = None
        self._size: tuple[int, int] | None = None
        self._view_frames: dict[str, int] = {}
        self._view_sizes: dict[str, tuple[int, int]] = {}
        self._view_has_masks: dict[str, bool] = {}
        self._check_destination()

    def _check_destination(self) -> None:
        if not (self.out.exists() or self.out.is_symlink()):
            return
        if not self.overwrite:
            raise file_error(self.out, "already exists", "choose another output folder, or allow replacing it (--overwrite on the command line)")
        if not self.out.is_dir() or not (is_sequence_folder(self.out) or not any(self.out.iterdir())):
            raise file_error(
                self.out, "exists and is not a sequence folder", "choose another output folder or remove it yourself"
            )

    def __enter__(self) -> SequenceWriter:
        self._tmp = partial_folder(self.out)
        (self._tmp / RGB_DIR).mkdir()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        unfinished = not self._finished
        if self._tmp is not None and self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        if exc_type is None and unfinished:
            raise RuntimeError(f"SequenceWriter for {self.out} was closed without finish(); nothing was written")

    def _tmp_dir(self) -> Path:
        if self._tmp is None or self._finished:
            raise RuntimeError("use SequenceWriter inside a `with` block and add nothing after finish()")
        return self._tmp

    def _check_rgb(self, rgb: np.ndarray, file: Path) -> tuple[int, int]:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise file_error(file, f"got an array of shape {rgb.shape} and dtype {rgb.dtype}", "pass uint8 RGB (H, W, 3)")
        return int(rgb.shape[1]), int(rgb.shape[0])

    def add_frame(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Appends the next frame: ``rgb`` uint8 (H, W, 3) and an optional uint8 (H, W) mask of labels 0-3."""
        tmp = self._tmp_dir()
        name = _frame_name(self._num_frames)
        size = self._check_rgb(rgb, self.out / RGB_DIR / name)
        if self._size is not None and size != self._size:
            raise file_error(self.out / RGB_DIR / name, f"is {size[0]}x{size[1]}", f"give all frames the size {self._size}")
        has_mask = mask is not None
        if self._has_masks is not None and has_mask != self._has_masks:
            raise file_error(self.out / MASKS_DIR, "would cover only some frames", "pass a mask with every frame or none")
        if mask is not None:
            _save_mask(mask, size, self.out / MASKS_DIR / name, tmp / MASKS_DIR / name)
        _save_png(np.asarray(rgb), tmp / RGB_DIR / name)
        self._size, self._has_masks = size, has_mask
        self._num_frames += 1

    def add_view_frame(self, view_name: str, rgb: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Appends the next frame of the extra static camera ``view_name`` (aligned by index), with an
        optional hand mask (as :meth:`add_frame`'s; every frame of a view has one or none does)."""
        tmp = self._tmp_dir()
        if not view_name or view_name.startswith(".") or Path(view_name).name != view_name:
            raise file_error(self.out / VIEWS_DIR, f"cannot hold a view named {view_name!r}", "use a plain folder name")
        index = self._view_frames.get(view_name, 0)
        file = self.out / VIEWS_DIR / view_name / RGB_DIR / _frame_name(index)
        size = self._check_rgb(rgb, file)
        if self._view_sizes.setdefault(view_name, size) != size:
            raise file_error(file, f"is {size[0]}x{size[1]}", "give all frames of a view the same size")
        if self._view_has_masks.setdefault(view_name, mask is not None) != (mask is not None):
            raise file_error(self.out / VIEWS_DIR / view_name / MASKS_DIR, "would cover only some frames", "pass a mask with every view frame or none")
        folder = tmp / VIEWS_DIR / view_name / RGB_DIR
        folder.mkdir(parents=True, exist_ok=True)
        _save_png(np.asarray(rgb), folder / _frame_name(index))
        if mask is not None:
            name = _frame_name(index)
            _save_mask(mask, size, self.out / VIEWS_DIR / view_name / MASKS_DIR / name, tmp / VIEWS_DIR / view_name / MASKS_DIR / name)
        self._view_frames[view_name] = index + 1

    def finish(
        self,
        cameras: SequenceCameras,
        hands: SequenceHands,
        views_cameras: Mapping[str, SequenceCameras] | None = None,
    ) -> Path:
        """Validates and writes the npz files (the views' too), then moves the folder to ``out``.

        Returns:
            The finished sequence folder ``out``.
        """
        tmp = self._tmp_dir()
        views_cameras = dict(views_cameras or {})
        if self._num_frames == 0 or self._size is None:
            raise file_error(self.out / RGB_DIR, "would hold no frame", "call add_frame before finish")
        width, height = self._size
        checked = self._checked(cameras, self.out / CAMERAS_FILE, self._num_frames, width, height)
        checked_hands = _validated_hands(_hands_arrays(hands), self.out / HANDS_FILE, self._num_frames)
        if set(views_cameras) != set(self._view_frames):
            raise file_error(
                self.out / VIEWS_DIR,
                f"has frames for views {sorted(self._view_frames)} but cameras for {sorted(views_cameras)}",
                "pass one SequenceCameras per view that has frames",
            )
        checked_views = {}
        for name, view_cameras in views_cameras.items():
            if self._view_frames[name] != self._num_frames:
                raise file_error(
                    self.out / VIEWS_DIR / name / RGB_DIR,
                    f"would hold {self._view_frames[name]} frames but the main video has {self._num_frames}",
                    "add one view frame per frame of the main video",
                )
            view_width, view_height = self._view_sizes[name]
            file = self.out / VIEWS_DIR / name / CAMERAS_FILE
            checked_views[name] = self._checked(view_cameras, file, self._num_frames, view_width, view_height)

        _save_cameras(tmp / CAMERAS_FILE, checked)
        _save_hands(tmp / HANDS_FILE, checked_hands)
        for name, view_cameras in checked_views.items():
            _save_cameras(tmp / VIEWS_DIR / name / CAMERAS_FILE, view_cameras)
        self._move_into_place(tmp)
        self._finished = True
        self._tmp = None
        return self.out

    @staticmethod
    def _checked(cameras: SequenceCameras, file: Path, num_frames: int, width: int, height: int) -> SequenceCameras:
        if (cameras.width, cameras.height) != (width, height):
            raise file_error(
                file,
                f"describes {cameras.width}x{cameras.height} images but the frames are {width}x{height}",
                "pass the frames' size",
            )
        return _validated_cameras(_cameras_arrays(cameras), file, num_frames, width, height)

    def _move_into_place(self, tmp: Path) -> None:
        self._check_destination()
        if not self.out.exists():
            tmp.rename(self.out)
            return
        # Swap with the old folder by two renames so `out` is never a half-written mix.
        old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.parent))
        old.rmdir()
        self.out.rename(old)
        try:
            tmp.rename(self.out)
        except OSError:
            old.rename(self.out)
            raise
        shutil.rmtree(old, ignore_errors=True)


def _save_mask(mask: np.ndarray, size: tuple[int, int], named: Path, file: Path) -> None:
    """Checks a hand mask for a frame of ``size`` (width, height) and saves it; ``named`` is where it will end up."""
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.shape != (size[1], size[0]):
        raise file_error(named, f"got shape {mask.shape} and dtype {mask.dtype}", "pass uint8 (H, W) the frame's size")
    _check_labels(mask, named)
    file.parent.mkdir(parents=True, exist_ok=True)
    _save_png(mask, file)


def _save_png(image: np.ndarray, file: Path) -> None:
    # Level 1 is several times faster than PIL's default on video frames; PNG stays lossless.
    Image.fromarray(image).save(file, format="PNG", compress_level=1)
