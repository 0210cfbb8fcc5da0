"""``hand4dgs infer``: reconstruct videos a trained network never saw, in one forward pass per batch of frames
(with ``video_shape``, after a pose-only pass over the whole video; its time counts in the frames/s).

For each video of ``--data`` it writes ``<output-dir>/<video>/``: ``hands.npz`` (per frame and
hand: joints in the world and camera frames, vertices, template parameters, validity),
``video.mp4`` and ``contact_sheet.png`` (input | render | overlay), ``metrics.json``
(frames/s; pose errors where the video has ground truth, crop PSNR/SSIM where it has masks) and,
where the video has ground truth, ``joint_error.png`` (per-frame MPJPE of model and pseudo-labels).
Each video's folder appears whole or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
from hand4dgs_ns.datasets.detect import load_sequences
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.eval.metrics import hand_crop_metrics, sequence_pose_errors
from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.geometry.cameras import project_points, transform_points, invert_rigid
from hand4dgs_ns.data.sequence_format import read_rgb
from hand4dgs_ns.inference.pictures import contact_sheet, overlay_panel, panel_row, write_mp4, write_png
from hand4dgs_ns.inference.plots import write_joint_error_plot
from hand4dgs_ns.inference.predict import predict_batch, render_hands, synchronized_time, video_hands
from hand4dgs_ns.inference.run import load_network, read_run, run_frame_inputs
from hand4dgs_ns.network.hand_network import HandNetwork
from hand4dgs_ns.network.video_shape import video_shape
from hand4dgs_ns.output_folder import atomic_folder
from hand4dgs_ns.progress import progress_bar

SHEET_ROWS = 6


@dataclass(frozen=True)
class Infer:
    """Reconstruct the hands of new videos with a trained hand4dgs or hand4dgs-generalized run (no optimisation)."""

    load_config: Path
    """The run's config.yml (its newest checkpoint is used, or the step its load_step names)."""
    data: Path
    """A sequence folder, a folder of them, or an H2O or ARCTIC folder (read with the run's dataset options)."""
    output_dir: Path
    """Where each video's folder is written."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the network runs; 'auto' takes CUDA when present."""
    batch_frames: int = 256
    """Frames predicted per forward pass (both hands each)."""
    video: bool = True
    """Write video.mp4 (input | render | overlay for every frame; contact_sheet.png is always written)."""
    cache_dir: Optional[Path] = None
    """Feature cache folder; default: the run's (or the user cache folder)."""
    overwrite: bool = False
    """Replace a video's existing output folder."""

    def main(self) -> None:
        if self.batch_frames < 1:
            raise Hand4DGSError(f"--batch-frames is {self.batch_frames}; pass 1 or more frames per forward pass.")
        run = read_run(self.load_config)
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device)
        dm = run.config.pipeline.datamanager
        videos = [SequenceTensors.from_sequence(s) for s in load_sequences(self.data, dm.dataparser.dataset)]
        for video in videos:
            if not bool(video.valid.any()):
                raise file_error(video.root, "has no usable hand box in any frame", "add boxes (hands.npz bbox and valid) from a hand detector or HaMeR")
            if (self.output_dir / video.name).exists() and not self.overwrite:
                raise file_error(self.output_dir / video.name, "already exists", "pass --overwrite to replace it or choose another --output-dir")
        started = time.perf_counter()
        inputs = run_frame_inputs(run, videos, self.cache_dir)
        features_s = time.perf_counter() - started
        network = load_network(run, inputs, device)
        console = Console(width=max(Console().width, 120))  # the table needs more than 80 characters
        table = Table(title=f"hand4dgs infer ({run.config.method_name}, step {run.step}, {device.type})")
        for column in ("video", "frames", "frames/s (cached features)", "frames/s (with features)", *_QUALITY.values()):
            table.add_column(column, justify="right")
        total_frames = int(inputs.lengths.sum())
        rows = []
        for s, video in enumerate(videos):
            share = features_s * video.num_frames / total_frames  # feature time split by frame count
            metrics = self._write_video(network, inputs, s, video, device, share)
            rows.append(metrics)
            table.add_row(
                video.name, str(video.num_frames), f"{metrics['fps_cached_features']:.0f}", f"{metrics['fps_with_features']:.0f}",
                *(_fmt(metrics.get(key)) for key in _QUALITY),
            )
        if len(rows) > 1:  # unweighted over videos, as ns-eval's means of the generalised method
            means = {key: float(np.mean([r[key] for r in rows])) for key in _QUALITY if all(key in r for r in rows)}
            table.add_row("mean", str(total_frames), "", "", *(_fmt(means.get(key)) for key in _QUALITY), style="bold")
        console.print(table)
        console.print(f"Wrote {len(videos)} video folder{'s' if len(videos) != 1 else ''} to [bold]{self.output_dir}[/].", highlight=False)

    def _write_video(
        self, network: HandNetwork, inputs: FrameInputs, s: int, video: SequenceTensors, device: torch.device, features_s: float
    ) -> dict:
        with atomic_folder(self.output_dir / video.name) as tmp:
            metrics = self._predict_and_write(network, inputs, s, video, device, tmp)
            metrics["features_s"] = features_s
            metrics["fps_with_features"] = video.num_frames / (features_s + metrics["predict_s"])
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def _predict_and_write(
        self, network: HandNetwork, inputs: FrameInputs, s: int, video: SequenceTensors, device: torch.device, out: Path
    ) -> dict:
        stager = PinnedStager(device)
        batches = list(inputs.frame_batches(s, self.batch_frames))
        predict_batch(network, inputs, s, batches[0], stager, with_gaussians=True)  # warm-up (kernels, autotuning)
        sheet_frames = set(np.linspace(0, video.num_frames - 1, min(SHEET_ROWS, video.num_frames)).round().astype(int).tolist())
        parts, c2ws, sheet_rows, psnrs, ssims = [], [], [], [], []
        started = synchronized_time(device)
        shape = video_shape(network, inputs, s, stager, self.batch_frames)  # None unless the network asks for it
        predict_s, render_s = synchronized_time(device) - started, 0.0  # the video's shape counts as prediction

        def panels():
            nonlocal predict_s, render_s
            with progress_bar() as progress:
                task = progress.add_task(f"Reconstructing {video.name}", total=video.num_frames)
                for frames in batches:
                    t0 = synchronized_time(device)
                    prediction, c2w = predict_batch(network, inputs, s, frames, stager, with_gaussians=True, shape=shape)
                    t1 = synchronized_time(device)
                    K = video.K[frames].to(device)
                    rgb, alpha = render_hands(prediction, c2w, K, video.width, video.height)
                    render_s += synchronized_time(device) - t1
                    predict_s += t1 - t0
                    parts.append(prediction.without_gaussians())
                    c2ws.append(c2w)
                    joints_px = project_points(K[:, None], transform_points(invert_rigid(c2w)[:, None], prediction.joints)).cpu().numpy()
                    for i, f in enumerate(frames.tolist()):
                        yield self._frame_panel(video, f, rgb[i], alpha[i], joints_px[i], prediction.valid[i].cpu().numpy(), sheet_frames, sheet_rows, psnrs, ssims)
                    progress.advance(task, len(frames))

        if self.video:
            write_mp4(out / "video.mp4", panels(), fps=video.fps)
        else:
            for _ in panels():
                pass
        if sheet_rows:
            write_png(out / "contact_sheet.png", contact_sheet([row for _, row in sheet_rows], [f"frame {f}" for f, _ in sheet_rows]))
        hands = video_hands(parts, c2ws)
        np.savez_compressed(out / "hands.npz", **hands.arrays(), fps=np.float32(video.fps))
        metrics: dict = {
            "frames": video.num_frames,
            "predict_s": predict_s,
            "render_s": render_s,
            "fps_cached_features": video.num_frames / predict_s,
            "fps_cached_features_with_render": video.num_frames / (predict_s + render_s),
        }
        if video.gt_joints is not None:
            valid = video.gt_valid & video.valid
            joints = torch.from_numpy(hands.joints_world)
            metrics.update(sequence_pose_errors(joints, video.gt_joints, valid))
            metrics.update({f"pseudo_{k}": v for k, v in sequence_pose_errors(video.pseudo_joints, video.gt_joints, valid).items()})
            write_joint_error_plot(out / "joint_error.png", joints, video.pseudo_joints, video.gt_joints, valid, title=video.name)
        if psnrs:
            metrics["psnr"], metrics["ssim"] = float(np.mean(psnrs)), float(np.mean(ssims))
        return metrics

    def _frame_panel(self, video, f, rgb, alpha, joints_px, valid, sheet_frames, sheet_rows, psnrs, ssims) -> np.ndarray:
        frame = read_rgb(video.image_paths[f])
        if video.mask_paths is not None:
            mask = cv2.imread(str(video.mask_paths[f]), cv2.IMREAD_UNCHANGED)
            if mask is not None and mask.shape[:2] == frame.shape[:2]:
                image = torch.from_numpy(frame).to(rgb.device).float() / 255.0
                labels = torch.from_numpy(mask).to(rgb.device)
                p, q = hand_crop_metrics(rgb, image, labels, video.bbox[f][video.valid[f]].to(rgb.device))
                psnrs.extend(p)
                ssims.extend(q)
        render, a = rgb.cpu().numpy(), alpha.cpu().numpy()
        row = panel_row(frame, render, overlay_panel(frame, render, a, joints_px, valid))
        if f in sheet_frames:
            sheet_rows.append((f, row))
        return row


_QUALITY = {"mpjpe_mm": "MPJPE", "ra_mpjpe_mm": "RA-MPJPE", "acc_err_mm": "Acc Err", "psnr": "PSNR (every frame)"}
"""The quality figures of metrics.json the summary table shows (mm, mm, mm/frame^2, dB)."""


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
