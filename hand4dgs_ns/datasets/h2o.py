"""The H2O dataset (Kwon et al., ICCV 2021) read into :class:`DatasetSequence` objects.

Layout (docs/formats.md section 2, read from the official code)::

    <root>/subject{1..4}/{h1,h2,k1,k2,o1,o2}/{0..7}/cam{0..4}/
        rgb/NNNNNN.png          frames (6 digits from 000000)
        cam_intrinsics.txt      fx fy cx cy width height
        cam_pose/NNNNNN.txt     16 numbers: row-major 4x4 camera-to-world, OpenCV axes, metres
        hand_pose_mano/NNNNNN.txt
                                124 numbers, 62 per hand (left first): valid flag, transl (3),
                                global orient + 45 finger axis-angles (48), betas (10); MANO
                                without PCA and with flat_hand_mean=True, in that camera's frame
        obj_pose/NNNNNN.txt     optional, 64 numbers: object class (0 = none), then 21 points
                                of its 3D box (centre, 8 corners, 12 edge midpoints), that
                                camera's frame; drawn into the masks as an occluder
                                (:mod:`hand4dgs_ns.datasets.objects`)

``cam4`` is the egocentric camera: its frames are the video, its ``hand_pose_mano`` the ground
truth. ``cam0``-``cam3`` are static third-person cameras, read as novel views for evaluation
(one without ``rgb/`` is left out; one with frames must match ``cam4``'s frames by name).
Folder and file names are matched case-insensitively (the official README writes
``hand_pose_MANO``, the archives hold ``hand_pose_mano``).

H2O stores no hand boxes. By default they are the projected ground-truth joints grown by a
margin (:func:`~hand4dgs_ns.datasets.boxes.boxes_from_joints`). A detections file replaces
them; it is an ``.npz`` holding

- ``bbox`` (F, 2, 4) float: xyxy pixels of the ``cam4`` frames, slot 0 left hand, 1 right hand;
- ``valid`` (F, 2) bool: which boxes the detector found;

with one row per ``cam4/rgb`` frame in name order. Its boxes are used as they are (no margin).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float
from PIL import Image, UnidentifiedImageError

from hand4dgs_ns.data.sequence_format import DEFAULT_FPS, SequenceCameras, SequenceView, list_images
from hand4dgs_ns.datasets.base import DatasetSequence
from hand4dgs_ns.datasets.boxes import boxes_from_joints
from hand4dgs_ns.datasets.objects import h2o_object_track
from hand4dgs_ns.errors import file_error
from hand4dgs_ns.geometry.cameras import project_points, transform_points
from hand4dgs_ns.hands import HandTemplate, hand_forward_axis_angle, load_template
from hand4dgs_ns.progress import progress_bar

EGO_CAMERA = "cam4"
VIEW_CAMERAS = ("cam0", "cam1", "cam2", "cam3")
RGB_DIR = "rgb"
INTRINSICS_FILE = "cam_intrinsics.txt"
CAM_POSE_DIR = "cam_pose"
MANO_POSE_DIR = "hand_pose_mano"
OBJECT_POSE_DIR = "obj_pose"
OBJECT_POSE_NUMBERS = 1 + 21 * 3
INTRINSICS_NUMBERS = 6
CAM_POSE_NUMBERS = 16
MANO_NUMBERS_PER_HAND = 62
MANO_POSE_NUMBERS = 2 * MANO_NUMBERS_PER_HAND
# root/subject/action/sequence: a sequence folder lies at most this deep below what users pass.
_MAX_DEPTH = 3
_MANO_BATCH = 512
# The same rounding allowance as the sequence format's check of stored poses.
_RIGID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class H2OSplit:
    """Which H2O sequences train and which test, by their subject and action folder names."""

    train_subjects: tuple[str, ...]
    """Subjects whose every action is used for training."""
    test_actions: tuple[tuple[str, str], ...]
    """``(subject, action)`` pairs used for testing."""


H2O_PAPER_SPLIT = H2OSplit(
    train_subjects=("subject1", "subject2", "subject3"),
    test_actions=(("subject4", "h1"),),
)
"""The Hand-4DGS paper's H2O split: test on subject4/h1, train on subject1-3.

The paper says "subject4/h1 as the test set and all other sequences for training"; this preset
reads "all other" as subjects 1-3, as the project's issue does, so subject4's other actions are
in neither list. H2O's own validation sequences (subject3 k2, o1, o2) are training sequences here.
"""



def _child(folder: Path, name: str) -> Path | None:
    """``folder/name`` matched case-insensitively (exact spelling first), or None."""
    exact = folder / name
    if exact.exists():
        return exact
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    return next((p for p in sorted(entries) if p.name.lower() == name.lower()), None)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _is_sequence_folder(path: Path) -> bool:
    cam4 = _child(path, EGO_CAMERA)
    return cam4 is not None and cam4.is_dir()


def _is_cam4_folder(path: Path) -> bool:
    """A folder named ``cam4`` holding any of H2O's camera entries."""
    if path.name.lower() != EGO_CAMERA or not path.is_dir():
        return False
    return any(_child(path, name) is not None for name in (RGB_DIR, INTRINSICS_FILE, CAM_POSE_DIR, MANO_POSE_DIR))


def _sequence_folder(path: Path) -> Path:
    """The sequence folder of ``path``, which is either the sequence folder or its ``cam4``."""
    return path.parent if _is_cam4_folder(path) else path


def _iter_sequences(path: Path, depth: int):
    if _is_sequence_folder(path):
        yield path
        return
    if depth == 0:
        return
    for child in _subfolders(path):
        yield from _iter_sequences(child, depth - 1)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def is_h2o_folder(path: Path) -> bool:
    """True for an H2O root, subject, action or sequence folder, or a sequence's ``cam4`` folder.

    A sequence folder is one holding ``cam4/``; the other levels are recognised by a sequence
    folder at most three levels below them. A sequence whose ``cam4`` is damaged is still
    recognised, so that :func:`read_h2o_sequence` can say what is wrong.
    """
    path = Path(path)
    if not path.is_dir():
        return False
    return _is_cam4_folder(path) or next(_iter_sequences(path, _MAX_DEPTH), None) is not None


def find_h2o_sequences(path: Path) -> list[Path]:
    """The H2O sequence folders (those holding ``cam4/``) at or under ``path``, in natural order.

    ``path`` may be the dataset root, a subject, an action or a sequence folder, or a ``cam4``
    folder (which gives its sequence).
    """
    path = Path(path)
    if not path.is_dir():
        raise file_error(path, "no such folder", "point to the H2O root, a subject, an action or a sequence folder")
    if _is_cam4_folder(path):
        return [path.parent]
    found = sorted(_iter_sequences(path, _MAX_DEPTH), key=_natural_key)
    if not found:
        raise file_error(
            path,
            "holds no H2O sequence (a folder such as subject1/h1/0 holding cam4/)",
            "point to the H2O root, a subject, an action or a sequence folder",
        )
    return found


def h2o_sequence_name(seq_folder: Path) -> str:
    """A unique, filesystem-safe name from the subject, action and sequence folders, e.g. ``subject4_h1_0``."""
    seq = _sequence_folder(Path(seq_folder).absolute())
    parts = [p.name for p in (seq.parent.parent, seq.parent, seq) if p.name]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts))


def split_h2o_sequences(root: Path, split: H2OSplit) -> tuple[list[Path], list[Path]]:
    """The sequences under ``root`` in the train and test parts of ``split``, by folder names.

    Sequences in neither part are left out. Names are compared case-insensitively.

    Raises:
        Hand4DGSError: when no sequence under ``root`` belongs to either part.
    """
    train_subjects = {s.lower() for s in split.train_subjects}
    test_actions = {(s.lower(), a.lower()) for s, a in split.test_actions}
    train, test = [], []
    for seq in find_h2o_sequences(root):
        subject, action = seq.parent.parent.name.lower(), seq.parent.name.lower()
        if (subject, action) in test_actions:
            test.append(seq)
        elif subject in train_subjects:
            train.append(seq)
    if not train and not test:
        wanted = ", ".join(split.train_subjects + tuple(f"{s}/{a}" for s, a in split.test_actions))
        raise file_error(root, f"holds no sequence of the split ({wanted})", "point to the H2O root that holds those subjects")
    return train, test


def h2o_paper_split(root: Path) -> tuple[list[Path], list[Path]]:
    """``(train, test)`` sequence folders of :data:`H2O_PAPER_SPLIT` under the H2O ``root``."""
    return split_h2o_sequences(root, H2O_PAPER_SPLIT)


def _parse_numbers(data: bytes, file: Path, count: int) -> np.ndarray:
    try:
        values = np.array(data.split(), dtype=np.float64)
    except ValueError:
        fix = f"restore it from the H2O archive (it must hold {count} numbers)"
        raise file_error(file, "holds text that is not a number", fix) from None
    if values.size != count:
        raise file_error(file, f"holds {values.size} numbers but must hold {count}", "restore it from the H2O archive")
    return values


def _parse_many(texts: list[bytes], files: list[Path], count: int) -> np.ndarray:
    """Numbers of many one-line files as one (N, count) array, parsed in a single conversion.

    One ``np.array`` over all tokens is several times faster than ``np.loadtxt`` per file on
    the thousands of small files of a sequence; a file is parsed on its own only to name it
    when something is wrong.
    """
    tokens = [text.split() for text in texts]
    for file, parts, text in zip(files, tokens, texts):
        if len(parts) != count:
            _parse_numbers(text, file, count)
    try:
        values = np.array(list(itertools.chain.from_iterable(tokens)), dtype=np.float64)
    except ValueError:
        for file, text in zip(files, texts):
            _parse_numbers(text, file, count)
        raise
    return values.reshape(len(files), count)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise file_error(file, f"cannot be read ({exc.strerror})", "check the file's permissions or restore it") from None


def _image_size(file: Path) -> tuple[int, int]:
    try:
        with Image.open(file) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise file_error(file, f"cannot be read as an image ({exc})", "restore it from the H2O archive") from None


@dataclass(frozen=True)
class _CameraFiles:
    """One camera folder's frames and per-frame pose files, checked to match by name."""

    folder: Path
    image_paths: list[Path]
    frame_ids: list[str]
    pose_files: list[Path]
    K: np.ndarray
    width: int
    height: int


def _per_frame_files(folder: Path, subdir: str, frame_ids: list[str], rgb: Path, fix: str) -> list[Path]:
    """``<folder>/<subdir>/<frame_id>.txt`` for every frame, or the error naming what is off."""
    directory = _child(folder, subdir)
    if directory is None or not directory.is_dir():
        raise file_error(folder / subdir, "is missing", fix)
    by_stem = {p.stem: p for p in directory.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith(".")}
    if len(by_stem) != len(frame_ids):
        raise file_error(
            directory,
            f"holds {len(by_stem)} .txt files but {rgb} holds {len(frame_ids)} frames",
            "restore the missing files from the H2O archive (one file per frame, named like the frame)",
        )
    missing = next((frame_id for frame_id in frame_ids if frame_id not in by_stem), None)
    if missing is not None:
        raise file_error(directory / f"{missing}.txt", "is missing", f"restore it from the H2O archive (one file per frame of {rgb})")
    return [by_stem[frame_id] for frame_id in frame_ids]


def _read_intrinsics(folder: Path) -> tuple[np.ndarray, int, int]:
    file = _child(folder, INTRINSICS_FILE)
    if file is None or not file.is_file():
        raise file_error(folder / INTRINSICS_FILE, "is missing", "restore it from the H2O archive (fx fy cx cy width height)")
    fx, fy, cx, cy, width, height = _parse_numbers(_read_bytes(file), file, INTRINSICS_NUMBERS)
    if not (fx > 0 and fy > 0 and width >= 1 and height >= 1 and width == int(width) and height == int(height)):
        raise file_error(file, "does not hold positive focal lengths and a whole image size", "restore it from the H2O archive")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, int(width), int(height)


def _camera_files(folder: Path, frame_ids: list[str] | None) -> _CameraFiles:
    """Lists a camera folder; ``frame_ids`` (the egocentric video's) must match a view's frames."""
    rgb = _child(folder, RGB_DIR)
    fix = f"restore {folder.name}/{RGB_DIR}/ from the H2O archive (frames 000000.png, 000001.png, ...)"
    if rgb is None or not rgb.is_dir():
        raise file_error(folder / RGB_DIR, "is missing", fix)
    image_paths = list_images(rgb)
    if not image_paths:
        raise file_error(rgb, "holds no .png or .jpg frame", fix)
    stems = [p.stem for p in image_paths]
    if frame_ids is not None and stems != frame_ids:
        raise file_error(
            rgb,
            f"holds {len(stems)} frames that do not match the {len(frame_ids)} frames of {EGO_CAMERA}/{RGB_DIR}/",
            "restore the camera's frames from the H2O archive (H2O's cameras share frame numbers)",
        )
    K, width, height = _read_intrinsics(folder)
    image_width, image_height = _image_size(image_paths[0])
    if (image_width, image_height) != (width, height):
        raise file_error(
            image_paths[0],
            f"is {image_width}x{image_height} but {INTRINSICS_FILE} says {width}x{height}",
            "use the frames at their original size",
        )
    pose_files = _per_frame_files(
        folder, CAM_POSE_DIR, stems, rgb, "restore the camera poses from the H2O archive (one 4x4 matrix per frame)"
    )
    return _CameraFiles(folder, image_paths, stems, pose_files, K, width, height)


def _view_folders(seq: Path) -> list[Path]:
    """The static cameras that have frames; views serve evaluation only, so one without
    ``rgb/`` (not downloaded, or removed to save space) is left out rather than refused."""
    folders = [_child(seq, view) for view in VIEW_CAMERAS]
    return [folder for folder in folders if folder is not None and folder.is_dir() and _child(folder, RGB_DIR) is not None]


def _check_rigid(c2w: np.ndarray, files: list[Path]) -> None:
    rotations = c2w[:, :3, :3]
    orthonormal_error = np.abs(rotations.transpose(0, 2, 1) @ rotations - np.eye(3)).max(axis=(1, 2))
    bottom_error = np.abs(c2w[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=-1)
    rigid = (orthonormal_error < _RIGID_TOLERANCE) & (bottom_error < 1e-6) & (np.linalg.det(rotations) > 0)
    if not rigid.all():
        raise file_error(
            files[int(np.argmin(rigid))],
            "is not a rigid camera-to-world transform (rotation, translation, last row 0 0 0 1)",
            "restore it from the H2O archive",
        )


def _read_text_files(groups: list[list[Path]], description: str) -> list[list[bytes]]:
    """Reads every file of every group, with one progress bar for all of them."""
    files = [file for group in groups for file in group]
    with progress_bar() as progress:
        texts = [_read_bytes(file) for file in progress.track(files, description=description)]
    out, start = [], 0
    for group in groups:
        out.append(texts[start : start + len(group)])
        start += len(group)
    return out


def _cameras(files: _CameraFiles, c2w: np.ndarray) -> SequenceCameras:
    return SequenceCameras(
        K=np.broadcast_to(files.K, (len(files.frame_ids), 3, 3)).astype(np.float32),
        c2w=c2w.astype(np.float32),
        fps=DEFAULT_FPS,
        width=files.width,
        height=files.height,
    )


def h2o_hand_joints(
    params: Float[np.ndarray, "F 124"], left: HandTemplate, right: HandTemplate
) -> tuple[Float[np.ndarray, "F 2 21 3"], Bool[np.ndarray, "F 2"]]:
    """21 OpenPose joints of both hands from ``hand_pose_mano`` rows, in that camera's frame.

    Each hand's 62 numbers are ``valid, transl (3), global_orient (3), hand_pose (45),
    betas (10)``; joints are ``MANO(pose, betas) + transl`` with absolute finger rotations, as
    H2O made them. Load the templates with ``flat_hand_mean=True`` and without the left-hand
    shapedirs fix. Hands not annotated get zeros. Computed in float64.

    Returns:
        ``(joints, valid)``: ``(F, 2, 21, 3)`` metres, slot 0 left, 1 right; ``(F, 2)`` flags.
    """
    num_frames = params.shape[0]
    hands = params.reshape(num_frames, 2, MANO_NUMBERS_PER_HAND)
    valid = hands[:, :, 0] > 0.5
    joints = np.zeros((num_frames, 2, 21, 3))
    for slot, template in enumerate((left, right)):
        template = template.to(dtype=torch.float64)
        values = torch.from_numpy(np.ascontiguousarray(hands[:, slot]))
        for start in range(0, num_frames, _MANO_BATCH):
            chunk = values[start : start + _MANO_BATCH]
            out = hand_forward_axis_angle(template, chunk[:, 4:7], chunk[:, 7:52], chunk[:, 52:62], chunk[:, 1:4])
            joints[start : start + _MANO_BATCH, slot] = out.joints.numpy()
    joints[~valid] = 0.0
    return joints, valid


def _read_detections(file: Path, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    fix = f"store 'bbox' (F,2,4) xyxy pixels and 'valid' (F,2) bool with F = {num_frames}, one row per {EGO_CAMERA} frame"
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError, AttributeError, TypeError) as exc:
        raise file_error(file, f"cannot be read as an .npz archive ({exc})", fix) from None
    for key in ("bbox", "valid"):
        if key not in arrays:
            raise file_error(file, f"has no '{key}' array", fix)
    bbox, valid = arrays["bbox"], arrays["valid"]
    if bbox.shape != (num_frames, 2, 4) or valid.shape != (num_frames, 2):
        raise file_error(file, f"holds bbox {bbox.shape} and valid {valid.shape}", fix)
    if not (np.issubdtype(bbox.dtype, np.number) and (valid.dtype == np.bool_ or np.isin(valid, (0, 1)).all())):
        raise file_error(file, f"holds bbox of dtype {bbox.dtype} and valid of dtype {valid.dtype}", fix)
    bbox, valid = bbox.astype(np.float32), valid.astype(bool)
    usable = valid & np.isfinite(bbox).all(axis=-1)
    inverted = usable & ((bbox[..., 2] < bbox[..., 0]) | (bbox[..., 3] < bbox[..., 1]))
    if inverted.any():
        frame, slot = (int(i) for i in np.argwhere(inverted)[0])
        raise file_error(file, f"'bbox' of frame {frame} slot {slot} has x2 < x1 or y2 < y1", "store boxes as x1 y1 x2 y2")
    bbox[~usable] = 0.0
    return bbox, usable


def read_h2o_sequence(
    seq_folder: Path,
    mano_dir: Path,
    *,
    hamer_root: Path | None = None,
    box_margin: float = 0.2,
    detections: Path | None = None,
) -> DatasetSequence:
    """Reads one H2O sequence: the ``cam4`` video, its cameras, ground truth, boxes and the static views.

    Args:
        seq_folder: a sequence folder (``subjectN/<action>/<n>``, holding ``cam4/``) or its ``cam4``.
        mano_dir: folder holding ``MANO_LEFT.pkl`` and ``MANO_RIGHT.pkl``.
        hamer_root: where per-video HaMeR folders live (``<hamer_root>/<name>``); by default
            ``<seq>/cam4/hamer``.
        box_margin: growth of the boxes around the projected ground-truth joints, as a fraction
            of their size on each side (ignored with ``detections``).
        detections: an ``.npz`` of detected boxes (module docstring) used instead.

    Raises:
        Hand4DGSError: one sentence naming the file or folder that is missing or malformed.
    """
    seq = _sequence_folder(Path(seq_folder))
    cam4 = _child(seq, EGO_CAMERA)
    if cam4 is None or not cam4.is_dir():
        raise file_error(seq, f"has no {EGO_CAMERA}/ folder", "point to an H2O sequence folder such as subject1/h1/0")
    name = h2o_sequence_name(seq)
    templates = {side: load_template("mano", side, mano_dir, flat_hand_mean=True) for side in ("left", "right")}

    ego = _camera_files(cam4, None)
    rgb = ego.image_paths[0].parent
    mano_files = _per_frame_files(
        cam4, MANO_POSE_DIR, ego.frame_ids, rgb, "restore the hand annotations from the H2O archive (one file per frame)"
    )
    views = [_camera_files(folder, ego.frame_ids) for folder in _view_folders(seq)]
    if detections is not None and not Path(detections).is_file():
        raise file_error(Path(detections), "is missing", "pass an existing detections .npz or leave it out to use ground-truth boxes")

    object_dir = _child(cam4, OBJECT_POSE_DIR)
    object_files = (
        _per_frame_files(cam4, OBJECT_POSE_DIR, ego.frame_ids, rgb, "restore the object annotations from the H2O archive")
        if object_dir is not None and object_dir.is_dir() else []
    )
    groups = [ego.pose_files, mano_files, object_files] + [view.pose_files for view in views]
    ego_poses, mano_texts, object_texts, *view_poses = _read_text_files(groups, f"Reading H2O {name}")
    c2w = _parse_many(ego_poses, ego.pose_files, CAM_POSE_NUMBERS).reshape(-1, 4, 4)
    _check_rigid(c2w, ego.pose_files)
    params = _parse_many(mano_texts, mano_files, MANO_POSE_NUMBERS)

    joints_cam, gt_valid = h2o_hand_joints(params, templates["left"], templates["right"])
    c2w_t = torch.from_numpy(c2w)
    joints_cam_t = torch.from_numpy(joints_cam)
    gt_joints = transform_points(c2w_t[:, None], joints_cam_t).numpy()
    gt_joints[~gt_valid] = 0.0

    if detections is not None:
        bbox, box_valid = _read_detections(Path(detections), len(ego.frame_ids))
    else:
        uv = project_points(torch.from_numpy(ego.K), joints_cam_t).numpy()
        in_front = (joints_cam[..., 2] > 1e-3).all(axis=-1)
        bbox, box_valid = boxes_from_joints(uv, gt_valid & in_front, ego.width, ego.height, margin=box_margin)

    objects = None
    if object_files:
        numbers = _parse_many(object_texts, object_files, OBJECT_POSE_NUMBERS)
        objects = h2o_object_track(numbers[:, 0].round().astype(np.int64), numbers[:, 1:].reshape(-1, 21, 3), c2w)

    sequence_views = {}
    for view, texts in zip(views, view_poses):
        view_c2w = _parse_many(texts, view.pose_files, CAM_POSE_NUMBERS).reshape(-1, 4, 4)
        _check_rigid(view_c2w, view.pose_files)
        view_name = view.folder.name.lower()
        sequence_views[view_name] = SequenceView(view_name, view.image_paths, _cameras(view, view_c2w))

    return DatasetSequence(
        dataset="h2o",
        name=name,
        root=cam4,
        image_paths=ego.image_paths,
        frame_ids=ego.frame_ids,
        cameras=_cameras(ego, c2w),
        bbox=bbox.astype(np.float32),
        box_valid=box_valid,
        gt_joints=gt_joints.astype(np.float32),
        gt_valid=gt_valid,
        views=sequence_views,
        hamer_dir=cam4 / "hamer" if hamer_root is None else Path(hamer_root) / name,
        objects=objects,
    )
