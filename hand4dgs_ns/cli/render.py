"""``hand4dgs render``: videos of a trained run's hands along camera paths that ``ns-render``
cannot make for a video model (its interpolated and spiral cameras carry no time):

- ``orbit``: the camera circles the hands of one frame (``--frame``), starting at the egocentric
  camera and looking at the hands' centre;
- ``bullet-time``: the same circle, while the video plays (``--frames``);
- ``ego``: the egocentric camera path as recorded (``--frames``), at ``--scale`` times its size.

The mp4 is written through the ffmpeg binary of the imageio-ffmpeg wheel and appears whole or
not at all. Axes and units are the package's (OpenCV cameras, metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from rich.console import Console
import tyro
from typing_extensions import Annotated

from hand4dgs_ns.cli.frame_slice import parse_frame_slice
from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
from hand4dgs_ns.datasets.detect import load_sequences
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.geometry.camera_paths import orbit
from hand4dgs_ns.inference.pictures import write_mp4
from hand4dgs_ns.inference.predict import predict_batch, render_hands
from hand4dgs_ns.inference.run import load_network, read_run, run_frame_inputs, training_data
from hand4dgs_ns.network.hand_network import GAUSSIAN_FIELDS, HandsPrediction
from hand4dgs_ns.network.video_shape import video_shape
from hand4dgs_ns.output_folder import atomic_file
from hand4dgs_ns.progress import progress_bar

PathKind = Literal["orbit", "bullet-time", "ego"]


@dataclass(frozen=True)
class Render:
    """Render a run's hands to an mp4 along a camera path: an orbit at one frame, bullet time, or the egocentric path."""

    load_config: Path
    """The run's config.yml (its newest checkpoint is used, or the step its load_step names)."""
    output: Path
    """The mp4 to write."""
    path: PathKind = "orbit"
    """orbit: circle the hands of --frame; bullet-time: circle while --frames play; ego: the recorded camera path."""
    data: Optional[Path] = None
    """A sequence folder, a folder of them, or an H2O or ARCTIC folder; default: the run's training data."""
    video: Optional[str] = None
    """Which video of --data (its folder name); default: the first."""
    frame: int = 0
    """orbit: the frame shown."""
    frames: Annotated[str, tyro.conf.arg(metavar="START:STOP")] = ":"
    """bullet-time and ego: the frames played, a Python slice such as 0:120 or ::2."""
    seconds: float = 4.0
    """orbit: length of the video."""
    degrees: float = 360.0
    """orbit and bullet-time: how far the camera travels round the hands."""
    distance: float = 1.0
    """orbit and bullet-time: distance from the hands, as a multiple of the egocentric camera's."""
    scale: float = 1.0
    """Image size as a multiple of the video's frames."""
    fps: Optional[float] = None
    """Frame rate of the mp4; default: the video's."""
    background: Literal["black", "white"] = "black"
    """Colour behind the hands."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the network and the renderer run; 'auto' takes CUDA when present."""
    batch_frames: int = 16
    """Views rendered per batch."""
    cache_dir: Optional[Path] = None
    """Feature cache folder; default: the run's (or the user cache folder)."""
    overwrite: bool = False
    """Replace an existing --output."""

    def main(self) -> None:
        if self.output.suffix.lower() != ".mp4":
            raise Hand4DGSError(f"--output {self.output} is not an .mp4 path; pass a file name ending in .mp4.")
        if self.output.exists() and not self.overwrite:
            raise file_error(self.output, "already exists", "pass --overwrite to replace it or choose another --output")
        if self.scale <= 0 or self.distance <= 0 or self.batch_frames < 1:
            raise Hand4DGSError("--scale, --distance and --batch-frames must be positive.")
        run = read_run(self.load_config)
        dm = run.config.pipeline.datamanager
        data = self.data if self.data is not None else training_data(run)
        videos = [SequenceTensors.from_sequence(s) for s in load_sequences(data, dm.dataparser.dataset)]
        names = [v.name for v in videos]
        if self.video is not None and self.video not in names:
            raise file_error(data, f"holds no video named '{self.video}'", f"pass --video as one of {', '.join(names)}")
        s = names.index(self.video) if self.video is not None else 0
        video = videos[s]
        frames, views = self._schedule(video)
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device)
        inputs = run_frame_inputs(run, [video], self.cache_dir)
        network = load_network(run, inputs, device)
        fps = self.fps or video.fps
        with atomic_file(self.output) as tmp, progress_bar() as progress:
            task = progress.add_task(f"Rendering {self.path} of {video.name}", total=len(frames))
            write_mp4(tmp, self._images(network, inputs, video, frames, views, device, lambda n: progress.advance(task, n)), fps)
        Console().print(f"Wrote {len(frames)} frames ({len(frames) / fps:.1f} s) to [bold]{self.output}[/]", highlight=False, soft_wrap=True)

    def _schedule(self, video: SequenceTensors) -> tuple[torch.Tensor, torch.Tensor]:
        """The video frame shown in each output frame, and each output frame's turn angle (radians)."""
        if self.path == "orbit":
            if not 0 <= self.frame < video.num_frames:
                raise Hand4DGSError(f"--frame {self.frame} is outside {video.root} ({video.num_frames} frames); pass 0 to {video.num_frames - 1}.")
            count = max(2, round(self.seconds * (self.fps or video.fps)))
            frames = torch.full((count,), self.frame)
        else:
            frames = torch.arange(video.num_frames)[parse_frame_slice(self.frames)]
            if len(frames) == 0:
                raise Hand4DGSError(f"--frames {self.frames} selects no frame of {video.root} ({video.num_frames} frames).")
        turn = torch.linspace(0.0, math.radians(self.degrees), len(frames) + 1, dtype=torch.float64)[:-1]
        return frames, turn if self.path != "ego" else torch.zeros(len(frames), dtype=torch.float64)

    @torch.no_grad()
    def _images(self, network, inputs, video: SequenceTensors, frames, turns, device, advance):
        """Rendered uint8 frames, batch by batch."""
        stager = PinnedStager(device)
        K = video.K.clone().float()
        K[:, :2] *= self.scale
        width, height = round(video.width * self.scale), round(video.height * self.scale)
        background = 1.0 if self.background == "white" else 0.0
        shape = video_shape(network, inputs, 0, stager, self.batch_frames)
        centre, start = self._orbit_anchor(network, inputs, video, frames, stager, shape)
        for batch, turn in zip(frames.split(self.batch_frames), turns.split(self.batch_frames)):
            unique, local = torch.unique(batch, return_inverse=True)
            prediction, _ = predict_batch(network, inputs, 0, unique, stager, with_gaussians=True, shape=shape)
            if self.path == "ego":
                c2w = video.c2w[batch].float()
            else:
                c2w = orbit(start.double(), centre.double(), turn, self.distance).float()
            views = prediction._replace(**{name: getattr(prediction, name)[local.to(device)] for name in GAUSSIAN_FIELDS})
            rgb, _ = render_hands(views, c2w.to(device), K[batch].to(device), width, height, background)
            for image in (rgb * 255).round().byte().cpu().numpy():
                yield image
            advance(len(batch))

    def _orbit_anchor(self, network, inputs, video: SequenceTensors, frames, stager, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """The hands' centre (mean of the present hands' vertices over the shown frames) and the
        egocentric camera the orbit starts from (that of the first shown frame).

        A pose-only pass over the frames, before the render pass predicts them again with their
        Gaussians: the centre must be known before the first view, and keeping every frame's
        Gaussians from one pass to the next would hold the whole path's splats in memory."""
        first = int(frames[0])
        if self.path == "ego":
            return torch.zeros(3), video.c2w[first]
        centres = []
        for batch in torch.unique(frames).split(64):
            prediction: HandsPrediction = predict_batch(network, inputs, 0, batch, stager, with_gaussians=False, shape=shape)[0]
            valid = prediction.valid.float()[..., None, None]  # (b, 2, 1, 1)
            summed = (prediction.vertices * valid).sum(dim=(1, 2))
            count = (valid.sum(dim=(1, 2)) * prediction.vertices.shape[2]).clamp(min=1)
            keep = prediction.valid.any(dim=1)
            centres.append((summed / count)[keep].cpu().double())
        present = torch.cat(centres)
        if len(present) == 0:
            raise Hand4DGSError(f"No hand is present in the chosen frames of {video.root}; pick frames whose hands.npz marks a hand valid.")
        return present.mean(dim=0), video.c2w[first].double()
