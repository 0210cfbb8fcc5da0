"""``hand4dgs export``: the 4D hands of a trained run as files other tools open.

For each video of ``--data`` (default: the run's training data) it writes ``<output-dir>/<video>/``:

- ``splats/frame_000123.ply``: both hands' Gaussians in the 3D Gaussian Splatting PLY layout
  (see :mod:`hand4dgs_ns.export.splats`), absent hands left out;
- ``meshes/frame_000123.ply`` (or ``.obj``): both hand meshes in one file, left hand first;
- ``hands.npz``: joints, vertices, template parameters and validity, as ``hand4dgs infer``
  writes them, for the exported frames, plus ``frames`` (their indices in the video);
- ``preview.png``: the first exported frame | its splat PLY, read back from disk and rendered
  from the frame's camera: a look at what a splat viewer will show.

Positions are in the video's world frame (metres, OpenCV-style axes). Each video's folder
appears whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
from hand4dgs_ns.datasets.detect import load_sequences
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.export.meshes import MeshFormat, hands_mesh, write_hands_mesh
from hand4dgs_ns.export.splats import Splats, read_splats_ply, write_splats_ply
from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.geometry.cameras import invert_rigid
from hand4dgs_ns.data.sequence_format import read_rgb
from hand4dgs_ns.inference.pictures import write_png
from hand4dgs_ns.inference.predict import predict_batch, synchronized_time, video_hands
from hand4dgs_ns.render.rasterize import rasterize
from hand4dgs_ns.cli.frame_slice import parse_frame_slice
from hand4dgs_ns.inference.run import load_network, read_run, run_frame_inputs, training_data
from hand4dgs_ns.network.hand_network import GAUSSIAN_FIELDS, HandNetwork
from hand4dgs_ns.network.video_shape import video_shape
from hand4dgs_ns.output_folder import atomic_folder
from hand4dgs_ns.progress import progress_bar

@dataclass(frozen=True)
class Export:
    """Write a trained run's hands, frame by frame, as Gaussian splat PLYs and meshes, with hands.npz."""

    load_config: Path
    """The run's config.yml (its newest checkpoint is used, or the step its load_step names)."""
    output_dir: Path
    """Where each video's folder is written."""
    data: Optional[Path] = None
    """A sequence folder, a folder of them, or an H2O or ARCTIC folder; default: the run's training data."""
    frames: Annotated[str, tyro.conf.arg(metavar="START:STOP")] = ":"
    """Frame indices to export, a Python slice such as 100:200 or ::2 (negatives count from the end: --frames=-50:)."""
    mesh_format: MeshFormat = "ply"
    """File format of the per-frame meshes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the network runs; 'auto' takes CUDA when present."""
    batch_frames: int = 64
    """Frames predicted per forward pass (both hands each)."""
    cache_dir: Optional[Path] = None
    """Feature cache folder; default: the run's (or the user cache folder)."""
    overwrite: bool = False
    """Replace a video's existing output folder."""

    def main(self) -> None:
        if self.batch_frames < 1:
            raise Hand4DGSError(f"--batch-frames is {self.batch_frames}; pass 1 or more frames per forward pass.")
        frame_slice = parse_frame_slice(self.frames)
        run = read_run(self.load_config)
        dm = run.config.pipeline.datamanager
        data = self.data if self.data is not None else training_data(run)
        videos = [SequenceTensors.from_sequence(s) for s in load_sequences(data, dm.dataparser.dataset)]
        selected = []
        for video in videos:
            frames = torch.arange(video.num_frames)[frame_slice]
            if len(frames) == 0:
                raise Hand4DGSError(
                    f"--frames {self.frames} selects no frame of {video.root} ({video.num_frames} frames); pass a range inside 0:{video.num_frames}."
                )
            if (self.output_dir / video.name).exists() and not self.overwrite:
                raise file_error(self.output_dir / video.name, "already exists", "pass --overwrite to replace it or choose another --output-dir")
            selected.append(frames)
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device)
        inputs = run_frame_inputs(run, videos, self.cache_dir)
        network = load_network(run, inputs, device)
        console = Console()
        for s, (video, frames) in enumerate(zip(videos, selected)):
            final = self.output_dir / video.name
            with atomic_folder(final) as tmp:
                seconds = self._predict_and_write(network, inputs, s, video, frames, device, tmp)
            console.print(
                f"{video.name}: {len(frames)} frames exported to [bold]{final}[/] in {seconds * 1000 / len(frames):.1f} ms per frame "
                f"(prediction and writing, {device.type})",
                highlight=False,
                soft_wrap=True,
            )

    def _predict_and_write(
        self, network: HandNetwork, inputs: FrameInputs, s: int, video: SequenceTensors, frames: torch.Tensor, device: torch.device, out: Path
    ) -> float:
        """Writes one video's files into ``out``; returns the seconds their prediction and writing took."""
        (out / "splats").mkdir()
        (out / "meshes").mkdir()
        faces = [branch.hand.faces.cpu().numpy() for branch in network.branches]
        stager = PinnedStager(device)
        batches = frames.split(self.batch_frames)
        if device.type == "cuda":
            predict_batch(network, inputs, s, batches[0], stager, with_gaussians=True)  # warm-up (kernels, autotuning), not timed
        # With video_shape, a pose-only pass over the whole video (not only the exported frames);
        # left out of the time per exported frame.
        shape = video_shape(network, inputs, s, stager, self.batch_frames)
        parts, c2ws = [], []
        started = synchronized_time(device)
        with progress_bar() as progress:
            task = progress.add_task(f"Exporting {video.name}", total=len(frames))
            for batch in batches:
                prediction, c2w = predict_batch(network, inputs, s, batch, stager, with_gaussians=True, shape=shape)
                gaussians = {name: getattr(prediction, name).float().cpu().numpy() for name in GAUSSIAN_FIELDS}
                vertices = prediction.vertices.float().cpu().numpy()
                for i, f in enumerate(batch.tolist()):
                    write_splats_ply(out / "splats" / f"frame_{f:06d}.ply", Splats(**{k: v[i] for k, v in gaussians.items()}))
                    mesh_path = out / "meshes" / f"frame_{f:06d}.{self.mesh_format}"
                    write_hands_mesh(mesh_path, hands_mesh(vertices[i], faces), self.mesh_format)
                    progress.advance(task)
                parts.append(prediction.without_gaussians())
                c2ws.append(c2w)
        hands = video_hands(parts, c2ws)
        np.savez_compressed(out / "hands.npz", **hands.arrays(), frames=frames.numpy(), fps=np.float32(video.fps))
        seconds = synchronized_time(device) - started
        first = int(frames[0])
        write_png(out / "preview.png", splats_preview(out / "splats" / f"frame_{first:06d}.ply", video, first, device))
        return seconds


def splats_preview(ply: Path, video: SequenceTensors, frame: int, device: torch.device) -> np.ndarray:
    """The video's frame | the Gaussians of a splat PLY (as read back from disk) rendered from its camera, uint8."""
    splats = read_splats_ply(ply)
    fields = {name: torch.from_numpy(getattr(splats, name)).to(device)[None] for name in GAUSSIAN_FIELDS}
    c2w, K = video.c2w[frame].to(device).float(), video.K[frame].to(device).float()
    out = rasterize(
        fields["means"], fields["quats"], fields["scales"], fields["opacities"], fields["colors"],
        invert_rigid(c2w)[None], K[None], video.width, video.height, with_depth=False,
    )
    render = (out.rgb[0].clamp(0, 1) * 255).round().byte().cpu().numpy()
    return np.concatenate([read_rgb(video.image_paths[frame]), render], axis=1)
