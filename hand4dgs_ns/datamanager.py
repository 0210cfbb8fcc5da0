"""Datamanager for Hand-4DGS: batches of frames with their hand targets; the model's frame inputs.

Each training step draws several frames of one sequence (frames of one sequence share an
image size, so they render in one batched call). The batch carries what the losses and
metrics compare against: the frame, its hand mask, boxes, pseudo-labels and (for evaluation
only) ground truth. The backbone inputs of every frame (crops or cached tokens) are built once
through the on-disk feature cache and handed to the model (see :mod:`hand4dgs_ns.features.frame_inputs`);
frames and masks are decoded once into the same cache and memory-mapped, so host memory does not
grow with the number of videos either (:mod:`hand4dgs_ns.features.frame_cache`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
import tyro
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import DataManager
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE
from torch.nn import Parameter

from hand4dgs_ns.features.backbones import BackboneName
from hand4dgs_ns.features.build_pool import map_videos
from hand4dgs_ns.features.frame_cache import HAND_COLOR_KEY, decoded_video, image_sizes, mean_hand_color
from hand4dgs_ns.features.frame_inputs import INPUTS_KEY
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.features.video_inputs import build_frame_inputs, feature_cache
from hand4dgs_ns.dataparsers.hand_metadata import HandSequencesMetadata, SequenceTensors, hand_metadata
from hand4dgs_ns.dataparsers.sequence_dataparser import SequenceDataParserConfig
from hand4dgs_ns.distributed import rank_share, rank_zero_first
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.geometry.temporal import smooth_tracks


@dataclass
class HandDataManagerConfig(FullImageDatamanagerConfig):
    """Frames of hand videos with their targets, plus every frame's backbone inputs.

    Derives from ``FullImageDatamanagerConfig`` only because ``ns-render dataset`` accepts no
    other datamanager configs; the inherited options this datamanager does not use are hidden.
    """

    _target: Type = field(default_factory=lambda: HandDataManager)
    masks_on_gpu: tyro.conf.Suppress[bool] = False
    images_on_gpu: tyro.conf.Suppress[bool] = False
    camera_res_scale_factor: tyro.conf.Suppress[float] = 1.0
    eval_num_images_to_sample_from: tyro.conf.Suppress[int] = -1
    eval_num_times_to_repeat_images: tyro.conf.Suppress[int] = -1
    eval_image_indices: tyro.conf.Suppress[Optional[Tuple[int, ...]]] = (0,)
    cache_images: tyro.conf.Suppress[Literal["cpu", "gpu"]] = "gpu"
    cache_images_type: tyro.conf.Suppress[Literal["uint8", "float32"]] = "uint8"
    max_thread_workers: tyro.conf.Suppress[Optional[int]] = None
    train_cameras_sampling_strategy: tyro.conf.Suppress[Literal["random", "fps"]] = "random"
    train_cameras_sampling_seed: tyro.conf.Suppress[int] = 42
    fps_reset_every: tyro.conf.Suppress[int] = 100
    dataparser: AnnotatedDataParserUnion = field(default_factory=SequenceDataParserConfig)
    """Which dataparser reads the videos."""
    frames_per_step: int = 4
    """Frames per training step."""
    videos_per_step: int = 1
    """Training videos a step's frames come from, frames_per_step shared evenly among them (videos
    with the frame size and the targets of the first one drawn; never more videos than frames). 1
    draws every frame of a step from one video (hand4dgs' default; hand4dgs-generalized takes 4)."""
    image_scale: float = 1.0
    """Scale of the frames the model renders and is compared with (e.g. 0.5 for a CPU); boxes and
    the hand predictions keep the full-resolution frame's pixels."""
    backbone: BackboneName = "small-cnn"
    """Hand feature backbone: 'small-cnn' trains with the model on cached crops; 'hamer-vit-h' is
    HaMeR's frozen ViT-H whose tokens are cached once (needs --pipeline.datamanager.hamer-checkpoint)."""
    hamer_checkpoint: Optional[Path] = None
    """HaMeR checkpoint file (for the hamer-vit-h backbone)."""
    crop_size: Optional[Tuple[int, int]] = None
    """Hand crop height and width for the small-cnn backbone (default 64 48; 128 96 doubles the
    resolution the network sees the fingers at)."""
    color_crop_scale: int = 1
    """With --pipeline.model.pixel-colors: the hands' colours (and the matte) are read from crops this many times the
    small-cnn crops' height and width, cut from the frame the same way (a second cached set; 1 reads
    the small-cnn crops themselves). The default 64 x 48 crops span the hand box enlarged 2x, so
    they hold a 50-pixel hand at about half the frame's resolution (2.1 frame pixels a crop pixel).
    Without pixel colours, or with another backbone's cached tokens, nothing reads them: none are cut."""
    cache_dir: Optional[Path] = None
    """Where crops and tokens are cached (default: the user cache folder, see hand4dgs_ns.paths)."""
    pseudo_label_smoothing: float = 0.05
    """Training targets: the pseudo-labels smoothed along time by a Gaussian of this standard
    deviation in seconds (0.05 = 1.5 frames at 30 frames/s), each hand within its runs of usable
    frames; 0 trains on them as given. A per-frame estimator's labels jitter from frame to frame,
    and a per-frame vertex loss teaches the network that jitter: on the GPU's full schedule the
    smoothed targets lowered MPJPE, RA-MPJPE and Acc Err on every clip (docs/benchmarks.md).
    Evaluation's pseudo-label row stays unsmoothed; ns-eval adds the smoothed labels' own row."""
    seed: int = 0
    """Seed of the frame sampling."""


@dataclass(frozen=True)
class _SequenceImages:
    """The cached frames of one sequence and one split, on the host.

    Only a batch's frames reach the device (through page-locked buffers, so serving a batch never
    makes the host wait for the GPU): GPU memory does not grow with the number of videos.
    """

    frames: torch.Tensor  # (n,) frame indices within the sequence
    dataset_index: torch.Tensor  # (n,) index of each frame in the split's dataset
    images: np.ndarray  # (F, H, W, 3) uint8, every frame of the sequence (memory-mapped)
    masks: np.ndarray  # (F, H, W) uint8 labels of every frame (memory-mapped)
    targets: dict  # hand_targets of the n frames


class HandDataManager(DataManager):
    """Serves frame batches for training and single frames for evaluation.

    In several processes (nerfstudio's DDP launch, ``world_size`` > 1) each rank draws its
    training windows from its own share of the training videos, dealt round-robin in sequence
    order (with fewer videos than ranks, every rank gets every video and the frames are dealt
    instead; :func:`hand4dgs_ns.distributed.rank_share`), with its own random stream (seed +
    rank). One process draws exactly as before. The caches are built by rank 0 alone.
    """

    config: HandDataManagerConfig

    def __init__(
        self,
        config: HandDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self.config = config
        self.device = torch.device(device)
        self.test_mode = test_mode
        if test_mode == "val" and self.device.type == "cpu" and not torch.cuda.is_available():
            CONSOLE.print("No CUDA device here: training on the CPU (the method configs default to it on such machines).")
        self.world_size = world_size
        self.local_rank = local_rank
        self.rank = comms.get_rank() if comms.is_dist_avail_and_initialized() else local_rank  # across machines
        if world_size > 1 and self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # this rank's GPU for everything not given a device (frozen backbone, kernels)
        self.test_split = "test" if test_mode in ("test", "inference") else "val"
        if self.config.data is not None:
            self.config.dataparser.data = Path(self.config.data)
        self.dataparser = self.config.dataparser.setup()
        self.includes_time = self.dataparser.includes_time
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        self.train_dataset = InputDataset(self.train_dataparser_outputs)
        self.eval_dataset = InputDataset(self.dataparser.get_dataparser_outputs(split=self.test_split))
        # Training and evaluation batches use cameras at image_scale; the datasets keep the frames'
        # own resolution, which ns-render dataset and the viewer's camera frustums read.
        self._train_cameras, self._eval_cameras = (
            scaled_cameras(dataset.cameras, self.config.image_scale) for dataset in (self.train_dataset, self.eval_dataset)
        )
        self.hands: HandSequencesMetadata = hand_metadata(self.train_dataset.metadata)
        self._generator = torch.Generator().manual_seed(self.config.seed + self.rank)
        self._stager = PinnedStager(self.device)
        self._frame_cache = feature_cache(self.config.cache_dir)
        self._decoded_videos: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._train: dict[int, _SequenceImages] = {}
        self._train_share: dict[int, torch.Tensor] = {}
        self._eval: dict[int, _SequenceImages] = {}
        # Every rank needs every video's entries (windows and evaluation read them all), so
        # building only a rank's own videos would still leave it waiting for the others; and two
        # processes building one entry would each remove the other's temporary files. So rank 0
        # builds whatever is missing and the others load the entries once it is done.
        with rank_zero_first():
            inputs = build_frame_inputs(
                self.hands.sequences, self.config.backbone, self.config.hamer_checkpoint, self.config.cache_dir, self.config.crop_size,
                self.config.color_crop_scale,
            )
            for dataset in (self.train_dataset, self.eval_dataset):
                dataset.metadata[INPUTS_KEY] = inputs
            self.frame_inputs = inputs
            super().__init__()  # calls setup_train / setup_eval unless test_mode is "inference"

    # ---- setup -------------------------------------------------------------------------
    def setup_train(self) -> None:
        self._train = self._cache_split(self.train_dataset, self.config.pseudo_label_smoothing)
        # Worked out here, where the decoded frames are: the model's colour decoder starts at it
        # (Hand4DGSModelConfig.mean_color_init), and every rank reads all videos, so all start alike.
        color = mean_hand_color([(c.images, c.masks, c.frames.tolist()) for c in self._train.values() if len(c.frames)])
        if color is not None:
            self.train_dataset.metadata[HAND_COLOR_KEY] = torch.from_numpy(color).float()
        lengths = {s: len(cached.frames) for s, cached in self._train.items()}
        self._train_share = rank_share(lengths, self.world_size, self.rank)

    def setup_eval(self) -> None:
        self._eval = self._cache_split(self.eval_dataset)
        self.fixed_indices_eval_dataloader = FixedIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)

    def _cache_split(self, dataset: InputDataset, pseudo_label_smoothing: float = 0.0) -> dict[int, _SequenceImages]:
        meta = hand_metadata(dataset.metadata)
        per_sequence: dict[int, _SequenceImages] = {}
        sequences = meta.sequence_index.unique().tolist()
        self._decode_all(sequences)
        for s in sequences:
            rows = torch.nonzero(meta.sequence_index == s).flatten()
            sequence = self.hands.sequences[s]
            frames = meta.frame_index[rows]
            if sequence.mask_paths is None:
                raise Hand4DGSError(
                    f"Sequence {sequence.root} has no masks/ folder: hand masks are needed for the image loss; "
                    "write them (0 background, 1 left, 2 right) or convert the dataset with hand4dgs."
                )
            images, masks = self._decoded(s)
            per_sequence[s] = _SequenceImages(
                frames=frames, dataset_index=rows, images=images, masks=masks,
                targets=hand_targets(smoothed_pseudo_labels(sequence, pseudo_label_smoothing), frames),
            )
        return per_sequence

    def _decode_all(self, sequences: list[int]) -> None:
        """Decodes (on a video's first run) or loads the frames and masks of ``sequences``, several videos at a time."""
        missing = [s for s in sequences if s not in self._decoded_videos and self.hands.sequences[s].mask_paths is not None]
        map_videos(self._decoded, missing, self._frame_cache, "Caching frames and masks")

    def _decoded(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence ``s``'s frames and masks at image_scale (memory maps), loaded once for both splits."""
        if s not in self._decoded_videos:
            sequence = self.hands.sequences[s]
            odd = sorted(image_sizes(sequence.mask_paths) - {(sequence.width, sequence.height)})
            if odd:
                CONSOLE.print(
                    f"[yellow]warning:[/] masks of {sequence.root} are {' and '.join(f'{w}x{h}' for w, h in odd)}, its frames "
                    f"{sequence.width}x{sequence.height}: the masks were resized to the frames (nearest label); check that they belong to them.",
                    highlight=False, soft_wrap=True,
                )
            # Truncated like nerfstudio's Cameras.rescale_output_resolution, so images match their cameras.
            size = (int(sequence.width * self.config.image_scale), int(sequence.height * self.config.image_scale))
            self._decoded_videos[s] = decoded_video(sequence.image_paths, sequence.mask_paths, size, self._frame_cache)
        return self._decoded_videos[s]

    def reseed(self, offset: int) -> None:
        """Draws from the stream of a resumed run (see :meth:`Hand4DGSPipeline.reseed`); each rank its own."""
        self._generator.manual_seed(self.config.seed + self.rank + offset)

    # ---- batches -----------------------------------------------------------------------
    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        self.train_count += 1
        sequences = list(self._train_share)
        counts = torch.tensor([len(self._train_share[s]) for s in sequences], dtype=torch.float)
        drawn = [int(torch.multinomial(counts, 1, generator=self._generator))]
        if self.config.videos_per_step > 1:
            # One batch: one frame size (a step renders at one size) and the same targets (a video
            # without ground truth or pseudo-label vertices cannot join one with them).
            like = _batch_signature(self._train[sequences[drawn[0]]])
            others = torch.tensor([_batch_signature(self._train[s]) == like for s in sequences]) & (counts > 0)
            others[drawn[0]] = False
            more = min(self.config.videos_per_step, self.config.frames_per_step) - 1  # at least a frame each
            more = min(more, int(others.sum()))
            if more:
                drawn += torch.multinomial(counts * others, more, generator=self._generator).tolist()
        parts = []
        for i, d in enumerate(drawn):
            s = sequences[d]
            share = self._train_share[s]  # this rank's positions among the sequence's training frames
            n = self.config.frames_per_step // len(drawn) + (i < self.config.frames_per_step % len(drawn))
            pick = share[torch.randperm(len(share), generator=self._generator)[: min(n, len(share))]]
            parts.append((s, self._train[s], pick))
        return self._batch(self._train_cameras, parts)

    def next_eval(self, step: int) -> Tuple[Cameras, Dict]:
        self.eval_count += 1
        return self.next_eval_image(step)

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        sequences = list(self._eval)
        s = sequences[int(torch.randint(len(sequences), (1,), generator=self._generator))]
        cached = self._eval[s]
        pick = torch.randint(len(cached.frames), (1,), generator=self._generator)
        return self._batch(self._eval_cameras, [(s, cached, pick)])

    def eval_frames(self):
        """Every eval frame once, in sequence and frame order, one at a time."""
        for s, cached in self._eval.items():
            for i in range(len(cached.frames)):
                yield self._batch(self._eval_cameras, [(s, cached, torch.tensor([i]))])

    def _batch(self, split_cameras: Cameras, parts: List[Tuple[int, _SequenceImages, torch.Tensor]]) -> Tuple[Cameras, Dict]:
        """Cameras (on the host, which the model reads without waiting for the GPU) and the batch (on
        the device) of the picked frames of one or more sequences: ``(sequence, its images, pick)``."""
        cameras = split_cameras[torch.cat([cached.dataset_index[pick] for _, cached, pick in parts])]
        frames = [cached.frames[pick] for _, cached, pick in parts]
        to_device = self._stager.to_device

        def gathered(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))

        batch = {
            "image": to_device(gathered([cached.images[f.numpy()] for (_, cached, _), f in zip(parts, frames)])).float() / 255.0,
            "hand_mask": to_device(gathered([cached.masks[f.numpy()] for (_, cached, _), f in zip(parts, frames)])),
            "sequence_index": to_device(torch.cat([torch.full_like(f, s) for (s, _, _), f in zip(parts, frames)])),
            "frame_index": to_device(torch.cat(frames)),
            **{
                key: to_device(torch.cat([cached.targets[key][pick] for _, cached, pick in parts]))
                for key in parts[0][1].targets
            },
        }
        batch["bbox_image"] = batch["bbox"] * self.config.image_scale  # boxes in the rendered image's pixels
        return cameras, batch

    # ---- nerfstudio's bookkeeping ------------------------------------------------------
    def get_train_rays_per_batch(self) -> int:
        sequence = self.hands.sequences[0]
        return self.config.frames_per_step * sequence.width * sequence.height

    def get_eval_rays_per_batch(self) -> int:
        sequence = self.hands.sequences[0]
        return sequence.width * sequence.height

    def get_datapath(self) -> Path:
        return Path(self.config.dataparser.data)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {}


def _batch_signature(cached: _SequenceImages) -> tuple:
    """What videos must share to be batched together: frame size, target names and shapes."""
    return cached.images.shape[1:3], sorted((key, tuple(value.shape[1:])) for key, value in cached.targets.items())


def hand_targets(sequence: SequenceTensors, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boxes, validity, pseudo-labels and (if present) ground truth of some frames of a sequence."""
    out = {
        "bbox": sequence.bbox[frames],
        "valid": sequence.valid[frames],
        "pseudo_joints": sequence.pseudo_joints[frames],
    }
    if sequence.pseudo_verts is not None:
        out["pseudo_verts"] = sequence.pseudo_verts[frames]
    if sequence.gt_joints is not None:
        out["gt_joints"] = sequence.gt_joints[frames]
        out["gt_valid"] = sequence.gt_valid[frames]
    return out


def smoothed_pseudo_labels(sequence: SequenceTensors, seconds: float) -> SequenceTensors:
    """``sequence`` with its pseudo-label joints and vertices smoothed along time by a Gaussian of
    ``seconds`` standard deviation (:func:`hand4dgs_ns.geometry.temporal.smooth_tracks`, in the
    sequence's frames); the sequence itself for 0."""
    if seconds <= 0:
        return sequence
    sigma = seconds * sequence.fps
    verts = sequence.pseudo_verts
    return dataclasses.replace(
        sequence,
        pseudo_joints=smooth_tracks(sequence.pseudo_joints, sequence.valid, sigma),
        pseudo_verts=None if verts is None else smooth_tracks(verts, sequence.valid, sigma),
    )


def scaled_cameras(cameras: Cameras, scale: float) -> Cameras:
    """A copy of ``cameras`` rendering ``scale`` times their image size (nerfstudio's truncation)."""
    out = copy.deepcopy(cameras)
    if scale != 1.0:
        out.rescale_output_resolution(scale)
    return out
