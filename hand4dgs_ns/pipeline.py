"""The Hand-4DGS pipeline: nerfstudio's vanilla pipeline plus hand-pose evaluation.

``ns-eval`` calls :meth:`Hand4DGSPipeline.get_average_eval_image_metrics`; besides PSNR/SSIM on
hand crops of the held-out frames it reports, for every sequence with held-out frames and
ground truth, MPJPE, RA-MPJPE and Acc Err of the model over all of that sequence's frames (the
network is feed-forward, so every frame is a prediction; ground truth is never used for
training) and the same metrics for the pseudo-labels, so each report reads "pseudo-label ->
model".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Type

import numpy as np
import torch
import torchvision.utils as vutils
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from PIL import Image
from rich.progress import track

from hand4dgs_ns.datamanager import HandDataManager, HandDataManagerConfig, smoothed_pseudo_labels
from hand4dgs_ns.dataparsers.hand_metadata import hand_metadata
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.eval.metrics import hand_crop_metrics, mask_boxes, sequence_pose_errors
from hand4dgs_ns.model.hand4dgs import Hand4DGSModel, Hand4DGSModelConfig

POSE_CHUNK = 64


@dataclass
class Hand4DGSPipelineConfig(VanillaPipelineConfig):
    """Hand datamanager + Hand-4DGS model, with hand-pose evaluation."""

    _target: Type = field(default_factory=lambda: Hand4DGSPipeline)
    datamanager: HandDataManagerConfig = field(default_factory=HandDataManagerConfig)
    model: Hand4DGSModelConfig = field(default_factory=Hand4DGSModelConfig)


def color_crops_read(config: Hand4DGSPipelineConfig) -> bool:
    """Whether the model reads colour crops larger than the backbone's: only ``pixel_colors`` on the
    small-cnn crops does (cached tokens come without crops), so with anything else none are cut."""
    return config.datamanager.color_crop_scale > 1 and config.datamanager.backbone == "small-cnn" and config.model.pixel_colors


def settle_color_crops(config: Hand4DGSPipelineConfig) -> None:
    """Refuses colour crops the model would read against moved boxes, and sets the scale to 1 where
    nothing would read them (so the generalised default needs no flag with other backbones or colours)."""
    scale = config.datamanager.color_crop_scale
    if scale < 1:
        raise Hand4DGSError(f"--pipeline.datamanager.color-crop-scale must be 1 or more, not {scale}.")
    if not color_crops_read(config):
        config.datamanager.color_crop_scale = 1
        return
    if config.model.box_jitter:
        raise Hand4DGSError(
            "--pipeline.model.box-jitter moves the boxes but not the colour crops of --pipeline.datamanager.color-crop-scale: "
            "pass --pipeline.model.box-jitter False or --pipeline.datamanager.color-crop-scale 1."
        )


def single_process_key(key: str) -> str:
    """A pipeline state-dict key as a single process names it: DDP wraps the model as ``_model.module``."""
    return "_model." + key.removeprefix("_model.module.") if key.startswith("_model.module.") else key


class CheckpointMismatch(Hand4DGSError):
    """A checkpoint whose network was built with other options than the run loading it. The
    trainer names the checkpoint in the sentence."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; {fix}.")
        self.problem, self.fix = problem, fix


class Hand4DGSPipeline(VanillaPipeline):
    """Vanilla pipeline whose full evaluation adds pose metrics."""

    datamanager: HandDataManager
    _model: Hand4DGSModel

    def __init__(self, config: Hand4DGSPipelineConfig, *args, **kwargs) -> None:
        config.model.check()  # before the datamanager spends minutes building caches
        settle_color_crops(config)
        super().__init__(config, *args, **kwargs)

    def load_pipeline(self, loaded_state: Dict[str, torch.Tensor], step: int) -> None:
        # nerfstudio falls back to loading what matches, and a resumed run's optimizers then fail
        # with a traceback: refuse a checkpoint whose network another set of options built first.
        saved = {single_process_key(key.removeprefix("module.")) for key in loaded_state}
        own = {f"_model.{name}" for name in self.model.state_dict()}
        missing = sorted(f"_model.{name}" for name, _ in self.model.named_parameters() if f"_model.{name}" not in saved)
        extra = sorted(key for key in saved - own if key.startswith("_model.network."))
        if missing or extra:
            names = [key.removeprefix("_model.") for key in missing or extra]
            problem = (f"the checkpoint lacks {len(missing)} of this run's network weights" if missing
                       else f"the checkpoint holds {len(extra)} weights this run's network has no place for")
            fix = "load it with the options it was trained with (its run's config.yml)"
            if any(name.startswith("network.matte.") for name in names):
                fix += f", here --pipeline.model.matte {'False' if missing else 'True'}"
            raise CheckpointMismatch(f"{problem} ({names[0]}, ...): it was saved with other network options", fix)
        super().load_pipeline(loaded_state, step)

    def reseed(self, offset: int) -> None:
        """Random streams for a resumed run (``offset``: :func:`hand4dgs_ns.trainer.resume_seed_offset`),
        not those of its first steps again."""
        self.datamanager.reseed(offset)
        self.model.reseed(offset)

    def train(self, mode: bool = True) -> "Hand4DGSPipeline":
        # nerfstudio calls pipeline.train() before every training step, and Module.train re-sets
        # the flag on every submodule (about a hundred): host time in a step whose pace the
        # host sets. Reading the flags is cheaper than writing them.
        if all(module.training == mode for module in self.modules()):
            return self
        return super().train(mode)

    @torch.no_grad()
    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, float]:
        self.eval()
        if output_path is not None:
            output_path.mkdir(parents=True, exist_ok=True)
        per_image: Dict[str, list] = {"psnr": [], "ssim": [], "psnr_square": [], "ssim_square": []}
        per_video: Dict[str, list] = {}
        names = [sequence.name for sequence in self.datamanager.hands.sequences]
        frames = list(self.datamanager.eval_frames())
        for idx, (camera, batch) in enumerate(track(frames, description="Evaluating held-out frames", transient=True)):
            outputs = self.model.get_outputs_for_camera(camera)
            metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
            name = names[int(batch["sequence_index"].reshape(-1)[0])]
            for key in per_image:
                if key in metrics:
                    per_image[key].append(metrics[key])
                    per_video.setdefault(f"{name}/{key}", []).append(metrics[key])
            if output_path is not None:
                for key, image in images.items():
                    vutils.save_image(image.permute(2, 0, 1).cpu(), output_path / f"eval_{key}_{idx:04d}.png")
        results: Dict[str, float] = {"num_eval_images": float(len(frames))}
        for key, values in per_image.items():
            if values:
                t = torch.tensor(values)
                results[key] = float(t.mean())
                if get_std:
                    results[f"{key}_std"] = float(t.std()) if len(values) > 1 else 0.0
        if len({key.split("/")[0] for key in per_video}) > 1:  # several held-out videos: each one's means too
            results.update({key: float(torch.tensor(values).mean()) for key, values in sorted(per_video.items())})
        results.update(self.pose_metrics())
        results.update(self.novel_view_metrics())
        self.train()
        return results

    @torch.no_grad()
    def novel_view_metrics(self) -> Dict[str, float]:
        """Hand-crop PSNR/SSIM of the held-out frames seen from the videos' static views that have
        hand masks (format v1 ``views/<name>/masks/``; the paper's novel-view table): the predicted
        hands are rendered from the view's camera and compared with the view's frame on the crops
        around each hand's mask. ``nvs_psnr``, ``nvs_ssim``, ``nvs_num_images``; empty without such views."""
        held_out = hand_metadata(self.datamanager.eval_dataset.metadata)
        views = [v for v in self.datamanager.hands.views if v.mask_filenames is not None]
        background = 0.0 if self.model.config.eval_background == "black" else 1.0
        psnrs, ssims, images = [], [], 0
        work = [(view, int(f)) for view in views for f in held_out.frame_index[held_out.sequence_index == view.sequence_index].tolist()]
        for view, f in track(work, description="Evaluating novel views", transient=True) if work else ():
            with Image.open(view.image_filenames[f]) as frame, Image.open(view.mask_filenames[f]) as mask:
                if mask.size != frame.size:  # as the main video's masks: resized to their frames
                    mask = mask.resize(frame.size, Image.Resampling.NEAREST)
                labels = torch.from_numpy(np.array(mask)).to(self.device)
                boxes = mask_boxes(labels)
                if len(boxes) == 0:
                    continue  # no hand visible from this view in this frame: nothing to render
                image = torch.from_numpy(np.array(frame.convert("RGB"))).to(self.device).float() / 255
            outputs = self.model.get_outputs_for_camera(view.cameras[f : f + 1])
            p, s = hand_crop_metrics(outputs["rgb"], image, labels, boxes.to(self.device), background)
            psnrs += p
            ssims += s
            images += 1
        if not psnrs:
            return {}
        return {"nvs_psnr": float(np.mean(psnrs)), "nvs_ssim": float(np.mean(ssims)), "nvs_num_images": float(images)}

    @torch.no_grad()
    def pose_metrics(self) -> Dict[str, float]:
        """MPJPE, RA-MPJPE, Acc Err (mm) of model and pseudo-labels (and of the smoothed pseudo-labels
        the model trained on, when smoothing is on) on the eval sequences with ground truth: the mean over sequences and, when there are several, each sequence's own as ``<name>/<metric>``."""
        eval_sequences = sorted(set(hand_metadata(self.datamanager.eval_dataset.metadata).sequence_index.tolist()))
        sums: Dict[str, list] = {}
        per_video: Dict[str, float] = {}
        for s in eval_sequences:
            sequence = self.datamanager.hands.sequences[s]
            if sequence.gt_joints is None:
                continue
            rows = [("", self.predict_sequence_joints(s).cpu()), ("pseudo_", sequence.pseudo_joints)]
            smoothing = self.datamanager.config.pseudo_label_smoothing
            if smoothing > 0:  # what the smoothed training targets score on their own
                rows.append(("smoothed_pseudo_", smoothed_pseudo_labels(sequence, smoothing).pseudo_joints))
            for name, joints in rows:
                for key, value in sequence_pose_errors(joints, sequence.gt_joints, sequence.gt_valid & sequence.valid).items():
                    sums.setdefault(name + key, []).append(value)
                    per_video[f"{sequence.name}/{name}{key}"] = value
        results = {key: float(torch.tensor(v).nanmean()) for key, v in sums.items() if not all(math.isnan(x) for x in v)}
        if len(eval_sequences) > 1:
            results.update({key: value for key, value in sorted(per_video.items()) if not math.isnan(value)})
        return results

    def predict_sequence_joints(self, s: int) -> torch.Tensor:
        """(F, 2, 21, 3) world-frame joints of every frame of sequence ``s``."""
        out = []
        for frame in self.model.inputs.frame_batches(s, POSE_CHUNK):  # host indices, as training gives them
            out.append(self.model.predict_hands(torch.full_like(frame, s), frame, with_gaussians=False).joints)
        return torch.cat(out)
