"""HaMeR pseudo-labels: the per-frame file, its conversion to the dataset's cameras, and attaching it.

One file per frame, ``<hamer_dir>/<frame_id>.npz`` (docs/formats.md section 5), slot 0 = left hand,
slot 1 = right hand. It holds what HaMeR's network and demo (``geopavlakos/hamer``,
``demo.py``) give, unconverted, so that files made by HaMeR's own tools can be imported:

=================  ===================  ==================================================
key                shape, dtype         what
=================  ===================  ==================================================
``valid``          (2,) bool            HaMeR ran on that hand; the other slot holds zeros
``bbox_xyxy``      (2, 4) float32       the box HaMeR cropped around (image pixels, before
                                        HaMeR's 2x enlargement)
``global_orient``  (2, 3, 3) float32    ``pred_mano_params['global_orient']``
``hand_pose``      (2, 15, 3, 3)        ``pred_mano_params['hand_pose']``: absolute rotation
                                        matrices, no ``hands_mean``
``betas``          (2, 10)              ``pred_mano_params['betas']``
``verts``          (2, 778, 3)          ``pred_vertices``: right-hand MANO output without
                                        translation, camera axes (OpenCV), metres
``kp3d``           (2, 21, 3)           ``pred_keypoints_3d``: the same hand's joints,
                                        OpenPose order
``cam_t_full``     (2, 3)               the hand's translation in HaMeR's full-image camera
                                        (below)
``vit_tokens``     (2, 192, 1280) f16   optional: the ViT-H tokens of the two crops
=================  ===================  ==================================================

HaMeR predicts every hand as a right hand: a left hand's crop is mirrored first, so slot 0's
``global_orient``, ``hand_pose``, ``verts`` and ``kp3d`` describe the MIRROR IMAGE of the real
left hand (right-hand MANO). ``cam_t_full`` is what the demo computes:
``cam_crop_to_full(pred_cam', box_center, box_size, (W, H), f_H)`` where ``pred_cam'`` is
``pred_cam = [s, tx, ty]`` with ``tx`` negated for left hands (``pred_cam[:, 1] *= 2 * right - 1``),
``box_center`` the unmirrored box centre, ``box_size`` HaMeR's square crop side and
``f_H = 5000 / 256 * max(W, H)``; HaMeR's camera has its principal point at the image centre
``(W/2, H/2)``. The real hand in that camera is ``verts + cam_t_full`` for a right hand and
``M @ verts + cam_t_full`` for a left hand, ``M = diag(-1, 1, 1)`` (as the demo's
``verts[:, 0] *= 2 * right - 1``).

Conversion to the dataset's camera (:func:`hamer_to_camera`):

1. Mirroring undone for slot 0: ``x`` of ``verts`` and ``kp3d`` negated; rotations
   ``R -> M R M`` (the same as negating the ``y`` and ``z`` of each axis-angle), which are the
   parameters of ``MANO_LEFT`` (exactly so with the left-hand ``shapedirs`` fix).
2. The dataset's camera ``K = [[fx, 0, cx], [0, fy, cy]]`` is not HaMeR's. What HaMeR measured
   in the image is kept: the pixel ``(u, v)`` where the hand's centre ``c`` (the mean of its 21
   joints) projects, and the hand's apparent size. With ``a = c + cam_t_full``,
   ``u = f_H a_x / a_z + W/2``, ``v = f_H a_y / a_z + H/2``; in the dataset's camera the centre
   goes to depth ``z = a_z f / f_H`` with ``f = sqrt(fx fy)`` (the apparent area is kept), at
   ``((u - cx) z / fx, (v - cy) z / fy, z)``; the hand keeps its shape and its orientation in
   camera axes and is moved there as a whole. This is exact for the centre. Other points
   differ from what HaMeR's camera shows by the change of perspective (their depth offset
   from the centre over the distance, times their offset) and, when the principal point is
   not the image centre, by the small angle between the two cameras' rays through ``(u, v)``.
3. Camera to world with the frame's ``c2w``.

:func:`attach_pseudo_labels` turns a :class:`~hand4dgs_ns.datasets.base.DatasetSequence` and
its HaMeR files into the project's :class:`~hand4dgs_ns.data.sequence_format.Sequence`, with
hand masks rasterised from the pseudo-label meshes and the held object's mesh (cached).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from PIL import Image
from torch import Tensor

from hand4dgs_ns.data.sequence_format import (
    MASK_BACKGROUND, MASK_LEFT, MASK_OCCLUDER, MASK_RIGHT, Sequence, SequenceCameras, SequenceHands,
)
from hand4dgs_ns.datasets.base import DatasetSequence
from hand4dgs_ns.datasets.mask_refine import MaskRefinement, refine_frame_masks
from hand4dgs_ns.datasets.objects import ObjectTrack
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.geometry.cameras import invert_rigid, transform_points
from hand4dgs_ns.geometry.mirror import mirror_points, mirror_rotations
from hand4dgs_ns.output_folder import partial_folder
from hand4dgs_ns.hands import load_template
from hand4dgs_ns.progress import progress_bar
from hand4dgs_ns.synthetic.rasterizer import rasterize_mesh

HAMER_FOCAL_LENGTH = 5000.0
"""HaMeR's ``EXTRA.FOCAL_LENGTH``: the focal length, in pixels, of its 256-pixel crop camera."""
HAMER_IMAGE_SIZE = 256
"""HaMeR's ``MODEL.IMAGE_SIZE``: the side of its square crop."""
NUM_VERTS = 778
NUM_JOINTS = 21
NUM_TOKENS = 192
TOKEN_DIM = 1280
_FORMAT_DOC = "as docs/formats.md section 5 describes"
_MAKE_THEM = (
    "make them with `hand4dgs preprocess <data folder> --hamer-checkpoint <file>` with the hamer package "
    f"installed, or put per-frame npz files in that folder {_FORMAT_DOC}"
)
_MAKE_ONE = (
    "make it with `hand4dgs preprocess <data folder> --hamer-checkpoint <file>` with the hamer package installed, "
    f"or write it {_FORMAT_DOC}"
)
_MASK_CACHE_FORMAT = "hamer-masks-v2"
_MASK_MANIFEST = "manifest.json"
_MASK_BATCH = 8
_REFINE_VERSION = "grabcut-2"  # bump when refine_hand_masks gives other masks for the same settings

# name -> (shape, what to store); ``vit_tokens`` is optional.
_FIELDS: dict[str, tuple[tuple[int, ...], str]] = {
    "valid": ((2,), "one flag per hand slot (0 left, 1 right)"),
    "bbox_xyxy": ((2, 4), "one xyxy pixel box per hand slot"),
    "global_orient": ((2, 3, 3), "one rotation matrix per hand slot"),
    "hand_pose": ((2, 15, 3, 3), "15 rotation matrices per hand slot"),
    "betas": ((2, 10), "10 shape coefficients per hand slot"),
    "verts": ((2, NUM_VERTS, 3), f"{NUM_VERTS} MANO vertices per hand slot"),
    "kp3d": ((2, NUM_JOINTS, 3), f"{NUM_JOINTS} joints per hand slot"),
    "cam_t_full": ((2, 3), "one translation per hand slot"),
    "vit_tokens": ((2, NUM_TOKENS, TOKEN_DIM), f"{NUM_TOKENS} x {TOKEN_DIM} float16 tokens per hand slot"),
}
_REQUIRED = tuple(k for k in _FIELDS if k != "vit_tokens")


@dataclass(frozen=True)
class HamerFrame:
    """HaMeR's raw predictions for the two hands of one frame (see the module docstring)."""

    valid: Bool[np.ndarray, "2"]
    """Which slots hold a prediction (0 left, 1 right); invalid slots hold zeros."""
    bbox_xyxy: Float[np.ndarray, "2 4"]
    """The boxes HaMeR cropped around, image pixels."""
    global_orient: Float[np.ndarray, "2 3 3"]
    """Root rotation (right-hand MANO; slot 0 mirrored)."""
    hand_pose: Float[np.ndarray, "2 15 3 3"]
    """Absolute finger-joint rotations (right-hand MANO; slot 0 mirrored)."""
    betas: Float[np.ndarray, "2 10"]
    """MANO shape coefficients."""
    verts: Float[np.ndarray, "2 778 3"]
    """MANO vertices without translation (slot 0 mirrored)."""
    kp3d: Float[np.ndarray, "2 21 3"]
    """Joints without translation, OpenPose order (slot 0 mirrored)."""
    cam_t_full: Float[np.ndarray, "2 3"]
    """Translation of the unmirrored hand in HaMeR's full-image camera."""
    vit_tokens: Float[np.ndarray, "2 192 1280"] | None = None
    """Optional float16 ViT-H tokens of the two crops."""

    @staticmethod
    def empty() -> HamerFrame:
        """A frame with no hand (both slots invalid, all zeros)."""
        zeros = {k: np.zeros(shape, bool if k == "valid" else np.float32) for k, (shape, _) in _FIELDS.items()}
        del zeros["vit_tokens"]
        return HamerFrame(**zeros)



def _validated_frame(arrays: Mapping[str, np.ndarray], file: Path) -> HamerFrame:
    """Checks keys, shapes, dtypes and finiteness; returns float32 arrays (float16 tokens)."""
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        present = ", ".join(sorted(arrays)) or "nothing"
        raise file_error(file, f"has no '{missing[0]}' array (it holds {present})", f"store the arrays {_FORMAT_DOC}")
    out: dict[str, np.ndarray] = {}
    for key, (shape, what) in _FIELDS.items():
        if key not in arrays:
            continue
        value = np.asarray(arrays[key])
        if value.shape != shape:
            raise file_error(file, f"'{key}' has shape {tuple(value.shape)} but must be {shape}", f"store {what}")
        is_number = np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
        if key == "valid":
            if value.dtype != np.bool_ and not (is_number and np.isin(value, (0, 1)).all()):
                problem = f"'valid' has dtype {value.dtype} with values other than 0/1"
                raise file_error(file, problem, f"store {what} as bool")
            out[key] = value.astype(bool)
            continue
        if not is_number:
            raise file_error(file, f"'{key}' has dtype {value.dtype}", f"store {what} as float numbers")
        out[key] = value.astype(np.float16 if key == "vit_tokens" else np.float32)
    valid = out["valid"]
    for key, value in out.items():
        if key == "valid":
            continue
        bad = ~np.isfinite(value) & valid.reshape((2,) + (1,) * (value.ndim - 1))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise file_error(file, f"'{key}' holds a NaN or infinite value at index {index}", "store finite numbers")
    behind = valid & ~(out["cam_t_full"][:, 2] > 0)
    if behind.any():
        slot = int(np.argmax(behind))
        problem = f"'cam_t_full' of slot {slot} has depth {out['cam_t_full'][slot, 2]} (not in front of the camera)"
        raise file_error(file, problem, f"store HaMeR's full-image translation {_FORMAT_DOC}")
    return HamerFrame(**out)


def read_hamer_frame(file: Path, *, tokens: bool = True) -> HamerFrame:
    """Reads and validates one per-frame HaMeR file.

    Args:
        file: ``<hamer_dir>/<frame_id>.npz``.
        tokens: also read ``vit_tokens`` when present (they are most of the file); off, the
            returned frame has ``vit_tokens=None``.

    Raises:
        Hand4DGSError: one sentence naming the file: unreadable or not an npz archive, a key
            missing, a wrong shape or dtype, a non-finite value in a valid slot.
    """
    file = Path(file)
    if not file.is_file():
        raise file_error(file, "does not exist", _MAKE_ONE)
    try:
        data = np.load(file, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            arrays = {k: np.asarray(data[k]) for k in data.files if tokens or k != "vit_tokens"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        fix = "delete it and make it again (hand4dgs preprocess redoes only the frames it lacks)"
        raise file_error(file, f"cannot be read as an .npz archive ({exc})", fix) from exc
    return _validated_frame(arrays, file)


def _arrays(frame: HamerFrame) -> dict[str, np.ndarray]:
    """The frame's arrays by npz key (no copies; absent tokens left out)."""
    values = {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame)}
    return {k: v for k, v in values.items() if v is not None}


def write_hamer_frame(file: Path, frame: HamerFrame) -> None:
    """Validates ``frame`` and writes it to ``file`` atomically (a temporary file, then a rename)."""
    file = Path(file)
    checked = _validated_frame(_arrays(frame), file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **_arrays(checked))
        os.replace(tmp, file)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---- HaMeR's camera ----------------------------------------------------------------------


def hamer_focal_length(width: int | float, height: int | float) -> float:
    """The focal length (pixels) HaMeR's demo assumes for a ``width`` x ``height`` image."""
    return HAMER_FOCAL_LENGTH / HAMER_IMAGE_SIZE * max(width, height)


def cam_crop_to_full(
    pred_cam: Float[Tensor, "*b 3"],
    box_center: Float[Tensor, "*b 2"],
    box_size: Float[Tensor, "*b"],
    width: int | float,
    height: int | float,
    focal_length: float,
) -> Float[Tensor, "*b 3"]:
    """HaMeR's ``cam_crop_to_full``: weak-perspective ``[s, tx, ty]`` of a crop -> full-image translation.

    ``t = [2 (cx - W/2) / bs + tx, 2 (cy - H/2) / bs + ty, 2 f / bs]`` with ``bs = box_size * s``
    (HaMeR adds 1e-9 to ``bs``, kept here so the numbers match).
    """
    s, tx, ty = pred_cam.unbind(-1)
    bs = box_size * s + 1e-9
    return torch.stack(
        [
            2 * (box_center[..., 0] - width / 2.0) / bs + tx,
            2 * (box_center[..., 1] - height / 2.0) / bs + ty,
            2 * focal_length / bs,
        ],
        dim=-1,
    )


def hamer_outputs_to_frame(
    outputs: Mapping[str, object],
    box_center: Float[Tensor, "B 2"],
    box_size: Float[Tensor, " B"],
    is_right: Bool[Tensor, " B"],
    width: int,
    height: int,
) -> dict[str, np.ndarray]:
    """HaMeR's model outputs for a batch of crops -> the per-frame file's fields for those B hands.

    Args:
        outputs: what ``HAMER.forward`` returns: ``pred_mano_params`` (``global_orient``
            (B,1,3,3), ``hand_pose`` (B,15,3,3), ``betas`` (B,10)), ``pred_cam`` (B,3),
            ``pred_vertices`` (B,778,3), ``pred_keypoints_3d`` (B,21,3). Not modified.
        box_center: unmirrored box centres in image pixels (HaMeR's ``box_center``).
        box_size: square crop sides in image pixels (HaMeR's ``box_size``; see
            :func:`hand4dgs_ns.features.crops.crop_params`).
        is_right: which crops are right hands (the others were mirrored).
        width, height: the image size.

    Returns:
        float32 arrays ``global_orient`` (B,3,3), ``hand_pose`` (B,15,3,3), ``betas`` (B,10),
        ``verts`` (B,778,3), ``kp3d`` (B,21,3) as the network gives them, and ``cam_t_full``
        (B,3) exactly as HaMeR's demo computes it (``tx`` negated for left hands).
    """
    params = outputs["pred_mano_params"]
    pred_cam = outputs["pred_cam"].detach().double()  # a copy: the demo negates tx in place
    b = pred_cam.shape[0]
    sign = 2.0 * is_right.to(pred_cam) - 1.0
    pred_cam = torch.stack([pred_cam[:, 0], sign * pred_cam[:, 1], pred_cam[:, 2]], dim=-1)
    cam_t = cam_crop_to_full(
        pred_cam, box_center.double(), box_size.double(), width, height, hamer_focal_length(width, height)
    )

    def array(value: Tensor, shape: tuple[int, ...]) -> np.ndarray:
        return value.detach().float().reshape(shape).cpu().numpy()

    return {
        "global_orient": array(params["global_orient"], (b, 3, 3)),
        "hand_pose": array(params["hand_pose"], (b, 15, 3, 3)),
        "betas": array(params["betas"], (b, 10)),
        "verts": array(outputs["pred_vertices"], (b, NUM_VERTS, 3)),
        "kp3d": array(outputs["pred_keypoints_3d"], (b, NUM_JOINTS, 3)),
        "cam_t_full": array(cam_t, (b, 3)),
    }


# ---- conversion to the dataset's camera and world ----------------------------------------


def unmirror_left(
    points: Float[Tensor, "*b 2 n 3"], rotations: Float[Tensor, "*b 2 k 3 3"] | None = None
) -> tuple[Float[Tensor, "*b 2 n 3"], Float[Tensor, "*b 2 k 3 3"] | None]:
    """Undoes HaMeR's mirroring of slot 0 (the left hand) in points and, if given, rotations.

    The rotations that come out are the parameters of ``MANO_LEFT`` for that hand.
    """
    left = torch.zeros(points.shape[-3], dtype=torch.bool, device=points.device)
    left[0] = True
    points = torch.where(left[:, None, None], mirror_points(points), points)
    if rotations is not None:
        rotations = torch.where(left[:, None, None, None], mirror_rotations(rotations), rotations)
    return points, rotations


def hamer_translation_to_camera(
    cam_t_full: Float[Tensor, "*b 3"],
    centre: Float[Tensor, "*b 3"],
    K: Float[Tensor, "*b 3 3"],
    width: int | float,
    height: int | float,
) -> Float[Tensor, "*b 3"]:
    """HaMeR's full-image translation -> the hand's translation in the dataset's camera ``K``.

    Keeps the pixel where the hand's ``centre`` (unmirrored, without translation) projects in
    HaMeR's camera (focal :func:`hamer_focal_length`, principal point at the image centre) and
    its apparent size: depth scaled by ``sqrt(fx fy) / f_H`` (see the module docstring).
    """
    f_h = hamer_focal_length(width, height)
    a = centre + cam_t_full
    u = f_h * a[..., 0] / a[..., 2] + width / 2.0
    v = f_h * a[..., 1] / a[..., 2] + height / 2.0
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    z = a[..., 2] * torch.sqrt(fx * fy) / f_h
    anchor = torch.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], dim=-1)
    return anchor - centre


def hamer_to_camera(
    verts: Float[Tensor, "*b 2 V 3"],
    kp3d: Float[Tensor, "*b 2 21 3"],
    cam_t_full: Float[Tensor, "*b 2 3"],
    K: Float[Tensor, "*b 3 3"],
    width: int | float,
    height: int | float,
) -> tuple[Float[Tensor, "*b 2 V 3"], Float[Tensor, "*b 2 21 3"]]:
    """Both hands of HaMeR files -> vertices and joints in the dataset's camera frame (OpenCV, metres)."""
    verts, _ = unmirror_left(verts)
    joints, _ = unmirror_left(kp3d)
    centre = joints.mean(dim=-2)
    t = hamer_translation_to_camera(cam_t_full, centre, K[..., None, :, :], width, height)
    return verts + t[..., None, :], joints + t[..., None, :]


def camera_to_world(c2w: Float[Tensor, "*b 4 4"], points: Float[Tensor, "*b h n 3"]) -> Float[Tensor, "*b h n 3"]:
    """Camera-frame points of ``h`` hands -> world frame, with each frame's camera-to-world."""
    return transform_points(c2w[..., None, :, :], points)


# ---- attaching pseudo-labels to a dataset sequence ----------------------------------------


def hamer_file(seq: DatasetSequence, index: int) -> Path:
    """The per-frame HaMeR file of frame ``index``."""
    return seq.hamer_dir / f"{seq.frame_ids[index]}.npz"


def read_hamer_frames(seq: DatasetSequence) -> list[HamerFrame]:
    """Every frame's HaMeR file (without tokens), validated.

    Raises:
        Hand4DGSError: one sentence saying where the files were expected and how to make them
            when the folder or any frame's file is missing, or naming a bad file.
    """
    if not seq.hamer_dir.is_dir():
        raise Hand4DGSError(
            f"{seq.hamer_dir} does not exist, so sequence {seq.name} has no HaMeR pseudo-labels "
            f"(one <frame_id>.npz per frame is expected there): {_MAKE_THEM}."
        )
    files = [hamer_file(seq, i) for i in range(seq.num_frames)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        others = f" and {len(missing) - 1} more of its {len(files)} frame files are" if len(missing) > 1 else " is"
        raise Hand4DGSError(
            f"{missing[0]}{others} missing, so sequence {seq.name} lacks HaMeR pseudo-labels "
            f"(one <frame_id>.npz per frame in {seq.hamer_dir}): {_MAKE_THEM}."
        )
    frames = []
    with progress_bar() as progress:
        task = progress.add_task(f"Reading HaMeR files of {seq.name}", total=len(files))
        for file in files:
            frames.append(read_hamer_frame(file, tokens=False))
            progress.advance(task)
    return frames


def training_boxes(
    seq: DatasetSequence, hamer_valid: Bool[np.ndarray, "F 2"]
) -> tuple[Float[np.ndarray, "F 2 4"], Bool[np.ndarray, "F 2"]]:
    """The boxes and flags training uses for ``seq``: usable boxes with a HaMeR prediction.

    Boxes of unusable hands are zeros, as the dataparser's tensors hold them; these are the
    exact arrays the feature cache is keyed on, so the preprocessing step caches tokens under
    the key training looks up.
    """
    valid = np.asarray(seq.box_valid, bool) & np.asarray(hamer_valid, bool)
    bbox = np.where(valid[..., None], seq.bbox, 0.0).astype(np.float32)
    return bbox, valid


def attach_pseudo_labels(
    seq: DatasetSequence, mano_dir: Path, cache_dir: Path, refinement: MaskRefinement | None = None
) -> Sequence:
    """The dataset sequence with HaMeR pseudo-labels (world frame) and hand masks: a :class:`Sequence`.

    Args:
        seq: the video as a dataset reader gives it; its HaMeR files are
            ``seq.hamer_dir/<frame_id>.npz``.
        mano_dir: folder with ``MANO_LEFT.pkl`` and ``MANO_RIGHT.pkl`` (their faces draw the masks).
        cache_dir: where the masks are kept: ``cache_dir/<dataset>/<name>/<frame_id>.png``
            (uint8, 0 background, 1 left, 2 right, 3 the held object where the reader gives one,
            :mod:`hand4dgs_ns.datasets.objects`), rebuilt when the HaMeR files, the cameras,
            which boxes are usable, the image size, the MANO faces, the object or the refinement
            change; each static view's in ``cache_dir/<dataset>/views/<name>/<view>/``, drawn
            from the same meshes and refined alike (pseudo-labels, not ground truth: masks never
            use ground truth).
        refinement: how far each drawn hand may move onto the frame's own hand
            (:func:`~hand4dgs_ns.datasets.mask_refine.refine_hand_masks`); None keeps the
            drawn masks, which show the hands where HaMeR put them.

    A hand is valid where its box is usable and HaMeR predicted it. ``pseudo_verts`` are the
    778 MANO vertices in the world frame (``MANO_LEFT`` topology for slot 0); invalid slots hold
    zeros.
    """
    frames = read_hamer_frames(seq)
    stacked = {k: np.stack([getattr(f, k) for f in frames]) for k in _REQUIRED}
    _, valid = training_boxes(seq, stacked["valid"])
    cameras = seq.cameras
    verts_cam, joints_cam = hamer_to_camera(
        torch.from_numpy(stacked["verts"]).double(),
        torch.from_numpy(stacked["kp3d"]).double(),
        torch.from_numpy(stacked["cam_t_full"]).double(),
        torch.from_numpy(np.asarray(cameras.K)).double(),
        cameras.width,
        cameras.height,
    )
    c2w = torch.from_numpy(np.asarray(cameras.c2w)).double()
    keep = torch.from_numpy(valid)

    def usable(points_world: Tensor) -> np.ndarray:
        return torch.where(keep[..., None, None], points_world, 0.0).float().numpy()

    verts_world = camera_to_world(c2w, verts_cam)
    faces = _mano_faces(Path(mano_dir))
    scene = _MaskScene(
        verts_world=verts_world,
        valid=valid,
        faces=faces,
        objects=seq.objects,
        digest=_scene_digest(stacked, valid, faces, seq.objects, cameras),
    )
    # Drawn and refined masks live apart, so switching --no-refine-masks back and forth reuses both.
    folder = Path(cache_dir) / seq.dataset / ("drawn" if refinement is None else "refined")
    mask_paths = _cached_masks(scene, cameras, seq.frame_ids, seq.image_paths, refinement, folder / seq.name, seq.name)
    # The static views' masks, drawn from the same meshes, let ns-eval score novel views.
    views = {
        name: dataclasses.replace(
            view,
            mask_paths=_cached_masks(
                scene, view.cameras, seq.frame_ids, view.image_paths, refinement, folder / "views" / seq.name / name,
                f"{seq.name} ({name})",
            ),
        )
        for name, view in seq.views.items()
    }
    hands = SequenceHands(
        bbox=np.asarray(seq.bbox, np.float32),
        valid=valid,
        pseudo_joints=usable(camera_to_world(c2w, joints_cam)),
        pseudo_verts=usable(verts_world),
        gt_joints=np.asarray(seq.gt_joints, np.float32),
        gt_valid=np.asarray(seq.gt_valid, bool),
    )
    return Sequence(
        root=seq.root,
        name=seq.name,
        image_paths=list(seq.image_paths),
        mask_paths=mask_paths,
        cameras=seq.cameras,
        hands=hands,
        views=views,
    )


# ---- hand masks ----------------------------------------------------------------------------


def _mano_faces(mano_dir: Path) -> tuple[Int[Tensor, "F 3"], Int[Tensor, "G 3"]]:
    """Left and right MANO faces; raises the standard sentence when a file is missing."""
    left, right = (load_template("mano", side, mano_dir) for side in ("left", "right"))
    for template, name in ((left, "MANO_LEFT.pkl"), (right, "MANO_RIGHT.pkl")):
        if template.num_vertices != NUM_VERTS:
            problem = f"has {template.num_vertices} vertices, HaMeR's hands {NUM_VERTS}"
            raise file_error(mano_dir / name, problem, "use the official MANO files")
    return left.faces, right.faces


def hand_masks(
    verts_cam: Float[Tensor, "B 2 V 3"],
    valid: Bool[Tensor, "B 2"],
    K: Float[Tensor, "B 3 3"],
    width: int,
    height: int,
    faces_left: Int[Tensor, "F 3"],
    faces_right: Int[Tensor, "G 3"],
    object_cam: Float[Tensor, "B N 3"] | None = None,
    object_faces: Int[Tensor, "H 3"] | None = None,
) -> Int[Tensor, "B H W"]:
    """Label images (0 background, 1 left, 2 right, 3 occluder) of both hands' meshes and, when
    given, a held object's (put it behind the camera in frames without it); the nearest surface wins."""
    b, _, v, _ = verts_cam.shape
    # Invalid hands go behind the camera, where the rasteriser drops their triangles.
    behind = verts_cam.new_tensor([0.0, 0.0, -1.0])
    verts = torch.where(valid[..., None, None], verts_cam, behind).reshape(b, 2 * v, 3)
    faces = torch.cat([faces_left, faces_right + v])
    hand_faces = len(faces)
    if object_cam is not None and object_faces is not None:
        faces = torch.cat([faces, object_faces + 2 * v])
        verts = torch.cat([verts, object_cam.to(verts.dtype)], dim=1)
    fragments = rasterize_mesh(verts, faces, K.float(), width, height)
    ids = fragments.face_ids
    labels = torch.full_like(ids, MASK_BACKGROUND)
    labels[ids >= 0] = MASK_LEFT
    labels[ids >= len(faces_left)] = MASK_RIGHT
    labels[ids >= hand_faces] = MASK_OCCLUDER
    return labels


def _object_in_camera(objects: ObjectTrack, frames: np.ndarray, w2c: Float[Tensor, "B 4 4"]) -> Float[Tensor, "B N 3"]:
    """The object's vertices in the given frames' cameras (``w2c``, float64); behind the camera where it is absent."""
    cam = transform_points(w2c, torch.from_numpy(objects.vertices(frames)))
    present = torch.from_numpy(objects.present[frames])[:, None, None]
    return torch.where(present, cam, cam.new_tensor([0.0, 0.0, -1.0])).float()


@dataclass(frozen=True)
class _MaskScene:
    """What a video's masks are drawn from, in the world frame, whichever camera looks at it."""

    verts_world: Float[Tensor, "F 2 V 3"]
    """Both hands' pseudo-label vertices (float64)."""
    valid: np.ndarray
    """(F, 2) which hands are drawn."""
    faces: tuple[Tensor, Tensor]
    """Left and right MANO faces."""
    objects: ObjectTrack | None
    """The held object, drawn as an occluder."""
    digest: str
    """Digest of everything above (and of the HaMeR files they come from)."""


def _scene_digest(
    stacked: Mapping[str, np.ndarray], valid: np.ndarray, faces: tuple[Tensor, Tensor], objects: ObjectTrack | None,
    ego: SequenceCameras,
) -> str:
    """Digest of the world-frame scene: HaMeR's outputs, the egocentric cameras that place them in
    the world, which hands are drawn, the faces and the object."""
    arrays = [valid, *(stacked[k] for k in _REQUIRED), *(f.numpy() for f in faces)]
    arrays += [np.asarray(ego.K, np.float64), np.asarray(ego.c2w, np.float64), np.array([ego.width, ego.height])]
    if objects is not None:
        arrays += [objects.rest_vertices, objects.faces, objects.vertex_part, objects.part_to_world, objects.present]
    return _digest(_MASK_CACHE_FORMAT, arrays)


def _digest(text: str, arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256(text.encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def drawn_masks(
    verts_world: Float[Tensor, "F 2 V 3"],
    valid: np.ndarray,
    cameras: SequenceCameras,
    faces: tuple[Int[Tensor, "A 3"], Int[Tensor, "B 3"]],
    objects: ObjectTrack | None = None,
) -> Iterator[np.ndarray]:
    """Each frame's labels (uint8 H x W, as :func:`hand_masks`) drawn from world-frame meshes, in
    frame order; ``cameras`` may be one static camera or one per frame, ``valid`` is (F, 2)."""
    num_frames = len(verts_world)
    c2w = np.broadcast_to(np.asarray(cameras.c2w, np.float64), (num_frames, 4, 4))
    K = torch.from_numpy(np.broadcast_to(np.asarray(cameras.K, np.float32), (num_frames, 3, 3)).copy())
    w2c = invert_rigid(torch.from_numpy(c2w.copy()))
    keep = torch.from_numpy(np.asarray(valid, bool))
    for start in range(0, num_frames, _MASK_BATCH):
        sel = slice(start, start + _MASK_BATCH)
        verts_cam = transform_points(w2c[sel, None], verts_world[sel].double()).float()
        held = (
            (_object_in_camera(objects, np.arange(num_frames)[sel], w2c[sel]), torch.from_numpy(objects.faces))
            if objects is not None else (None, None)
        )
        labels = hand_masks(verts_cam, keep[sel], K[sel], cameras.width, cameras.height, *faces, *held)
        yield from labels.to(torch.uint8).numpy()


def _refined(frames: Iterable[tuple[Path, np.ndarray]], refinement: MaskRefinement) -> Iterator[np.ndarray]:
    """Each (frame file, drawn labels) refined, in order, several frames at a time (OpenCV releases
    the interpreter lock), holding a bounded number of frames."""
    workers = min(8, os.cpu_count() or 1)
    frames = iter(frames)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while chunk := list(itertools.islice(frames, 4 * workers)):
            yield from pool.map(lambda frame: refine_frame_masks(*frame, refinement), chunk)


def _cached_masks(
    scene: _MaskScene,
    cameras: SequenceCameras,
    frame_ids: list[str],
    image_paths: list[Path],
    refinement: MaskRefinement | None,
    folder: Path,
    title: str,
) -> list[Path]:
    """The mask files of one camera's frames, rendered (and refined to the frames when
    ``refinement`` is given) unless ``folder`` holds them for the same scene, cameras and
    refinement.

    A new folder is rendered beside the old one and swapped in by renames, its manifest
    written last, so an interrupted run never leaves a folder that looks complete.
    """
    settings = None if refinement is None else {"method": _REFINE_VERSION, **dataclasses.asdict(refinement)}
    camera_text = json.dumps([scene.digest, cameras.width, cameras.height, list(frame_ids), settings])
    key = _digest(camera_text, [np.asarray(cameras.K, np.float64), np.asarray(cameras.c2w, np.float64)])
    paths = [folder / f"{frame_id}.png" for frame_id in frame_ids]
    manifest = folder / _MASK_MANIFEST
    try:
        reusable = json.loads(manifest.read_text()).get("key") == key and all(p.is_file() for p in paths)
    except (OSError, ValueError, AttributeError):
        reusable = False
    if reusable:
        return paths
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_folder(folder)
    masks = drawn_masks(scene.verts_world, scene.valid, cameras, scene.faces, scene.objects)
    if refinement is not None:
        masks = _refined(zip(image_paths, masks, strict=True), refinement)
    verb = "Drawing hand masks" if refinement is None else "Drawing and refining hand masks"
    try:
        with progress_bar() as progress:
            for frame_id, labels in progress.track(
                zip(frame_ids, masks, strict=True), total=len(frame_ids), description=f"{verb} of {title}"
            ):
                # Level 1 is several times faster than PIL's default; PNG stays lossless.
                Image.fromarray(labels).save(tmp / f"{frame_id}.png", format="PNG", compress_level=1)
        (tmp / _MASK_MANIFEST).write_text(json.dumps({"format": _MASK_CACHE_FORMAT, "key": key}))
        _swap_in(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _swap_in(new: Path, folder: Path) -> None:
    """Replaces ``folder`` by ``new`` with two renames, so ``folder`` is never a half-written mix."""
    if not folder.exists():
        new.rename(folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    old.rmdir()
    folder.rename(old)
    try:
        new.rename(folder)
    except OSError:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
