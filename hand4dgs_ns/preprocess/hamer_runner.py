"""Runs HaMeR on a dataset video's hand boxes: per-frame pseudo-label files, and ViT-H tokens for training.

Needs the ``hamer`` package (https://github.com/geopavlakos/hamer), which is not a dependency
of this project; without it, pseudo-labels can be imported as per-frame npz files instead
(docs/formats.md section 5). The maths lives in :mod:`hand4dgs_ns.datasets.hamer`; this module only
feeds the network and writes its outputs.

HaMeR's input is our crop of each box: :func:`~hand4dgs_ns.features.crops.crop_params` with
HaMeR's demo enlargement (2.0) and its 3:4 aspect, resampled to the full 256 x 256 square
(HaMeR's ``batch['img']``; the model itself keeps the central 256 x 192 for its ViT), left
hands mirrored, ImageNet-normalised: what ``ViTDetDataset`` produces, up to its half-pixel
convention (see :mod:`hand4dgs_ns.features.crops`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from hand4dgs_ns.data.sequence_format import read_rgb
from hand4dgs_ns.features.cache import hand_features_for_sequence
from hand4dgs_ns.features.video_inputs import feature_cache, frozen_backbone_device
from hand4dgs_ns.datasets.base import DatasetSequence
from hand4dgs_ns.datasets.hamer import (
    HAMER_FOCAL_LENGTH,
    HAMER_IMAGE_SIZE,
    HamerFrame,
    hamer_file,
    hamer_outputs_to_frame,
    read_hamer_frame,
    read_hamer_frames,
    training_boxes,
    write_hamer_frame,
)
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones import make_backbone
from hand4dgs_ns.features.crops import HAMER_BBOX_SHAPE_HW, HAMER_RESCALE, crop_hands_per_image, crop_params
from hand4dgs_ns.progress import progress_bar

HAMER_URL = "https://github.com/geopavlakos/hamer"
_CROP_HW = (HAMER_IMAGE_SIZE, HAMER_IMAGE_SIZE)


def _import_load_hamer(seq: DatasetSequence):
    try:
        from hamer.models import load_hamer
    except ImportError as exc:
        raise Hand4DGSError(
            f"HaMeR cannot run because the hamer package does not import ({exc}): install HaMeR ({HAMER_URL}) "
            f"in this environment, or put per-frame pseudo-label npz files in {seq.hamer_dir} as docs/formats.md "
            "section 5 describes."
        ) from exc
    return load_hamer


def _frames_to_do(seq: DatasetSequence) -> list[int]:
    """Frames without a readable HaMeR file (the others are kept: a run can be resumed)."""
    todo = []
    with progress_bar() as progress:
        task = progress.add_task(f"Checking HaMeR files of {seq.name}", total=seq.num_frames)
        for i in range(seq.num_frames):
            try:
                read_hamer_frame(hamer_file(seq, i), tokens=False)
            except Hand4DGSError:
                todo.append(i)
            progress.advance(task)
    return todo


def _load_model(load_hamer, checkpoint: Path, device: torch.device):
    config_file = checkpoint.parent.parent / "model_config.yaml"
    if not config_file.is_file():
        raise Hand4DGSError(
            f"{config_file} is missing, and HaMeR reads its model settings there (two folders above the checkpoint): "
            f"keep the checkpoint in the folder layout HaMeR's download gives ({HAMER_URL})."
        )
    model, cfg = load_hamer(str(checkpoint))
    settings = (cfg.EXTRA.FOCAL_LENGTH, cfg.MODEL.IMAGE_SIZE, tuple(cfg.MODEL.BBOX_SHAPE))
    expected = (HAMER_FOCAL_LENGTH, HAMER_IMAGE_SIZE, HAMER_BBOX_SHAPE_HW[::-1])
    if settings != expected:
        raise Hand4DGSError(
            f"{config_file} sets focal length, crop size and box shape {settings}, not HaMeR's released {expected}, "
            "which the pseudo-label conversion assumes: use the released HaMeR checkpoint."
        )
    return model.to(device).eval()


@torch.no_grad()
def _run_frames(model, seq: DatasetSequence, frames: list[int], device: torch.device) -> None:
    """Runs HaMeR on the usable boxes of ``frames`` (one batch) and writes their files."""
    images = torch.from_numpy(np.stack([read_rgb(seq.image_paths[i]) for i in frames])).to(device)
    height, width = images.shape[1:3]
    if (width, height) != (seq.cameras.width, seq.cameras.height):
        raise Hand4DGSError(
            f"{seq.image_paths[frames[0]]} is {width}x{height} but the sequence's cameras describe "
            f"{seq.cameras.width}x{seq.cameras.height} images: check the dataset's frames."
        )
    valid = np.asarray(seq.box_valid[frames], bool)
    safe = np.where(valid[..., None], seq.bbox[frames], np.array([0, 0, 1, 1], np.float32))
    centre, size = crop_params(torch.from_numpy(safe.astype(np.float32)).to(device), HAMER_RESCALE)
    is_right = torch.tensor([False, True], device=device).expand(len(frames), 2)
    crops = crop_hands_per_image(images, centre, size, ~is_right, _CROP_HW, normalize=True)
    keep = torch.from_numpy(valid).to(device)
    fields = {}
    if keep.any():
        outputs = model({"img": crops[keep]})
        fields = hamer_outputs_to_frame(outputs, centre[keep], size[keep], is_right[keep], width, height)
    row = 0
    for n, i in enumerate(frames):
        arrays = {k: v for k, v in dataclasses.asdict(HamerFrame.empty()).items() if v is not None}
        for slot in range(2):
            if valid[n, slot]:
                for key, value in fields.items():
                    arrays[key][slot] = value[row]
                arrays["valid"][slot] = True
                arrays["bbox_xyxy"][slot] = seq.bbox[i, slot]
                row += 1
        write_hamer_frame(hamer_file(seq, i), HamerFrame(**arrays))


def preprocess_sequence(
    seq: DatasetSequence,
    checkpoint: Path,
    *,
    device: str | None = None,
    batch_size: int = 32,
    features: bool = True,
    feature_cache_dir: Path | None = None,
) -> None:
    """Writes ``seq.hamer_dir/<frame_id>.npz`` for every frame and, optionally, caches ViT-H tokens.

    Args:
        seq: the video; HaMeR runs on its usable boxes (``seq.box_valid``).
        checkpoint: HaMeR's ``hamer.ckpt`` (with ``model_config.yaml`` two folders above, as
            HaMeR's download lays it out).
        device: where HaMeR runs; CUDA when available by default.
        batch_size: hand crops per forward pass.
        features: also cache the crops' ViT-H tokens (our ``hamer-vit-h`` backbone, built from
            the same checkpoint) under the key training looks up.
        feature_cache_dir: the feature cache folder; training's default when None.

    Frames whose file exists and reads back are skipped, so an interrupted run resumes.

    Raises:
        Hand4DGSError: the checkpoint is missing, or the hamer package is not installed and
            there are frames left to do.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise Hand4DGSError(
            f"HaMeR checkpoint {checkpoint} does not exist: "
            f"download HaMeR's checkpoint ({HAMER_URL}) and pass its path."
        )
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    todo = _frames_to_do(seq)
    if todo:
        model = _load_model(_import_load_hamer(seq), checkpoint, run_device)
        per_batch = max(1, batch_size // 2)
        batches = [todo[i : i + per_batch] for i in range(0, len(todo), per_batch)]
        with progress_bar() as progress:
            task = progress.add_task(f"HaMeR on {seq.name}", total=len(todo))
            for frames in batches:
                _run_frames(model, seq, frames, run_device)
                progress.advance(task, len(frames))
        del model
    if features:
        hamer_valid = np.stack([frame.valid for frame in read_hamer_frames(seq)])
        bbox, valid = training_boxes(seq, hamer_valid)
        # Built exactly as the datamanager builds it, so the cache key (weights identity) matches.
        backbone = frozen_backbone_device(make_backbone("hamer-vit-h", checkpoint))
        hand_features_for_sequence(list(seq.image_paths), bbox, valid, backbone, feature_cache(feature_cache_dir))
