"""``hand4dgs demo``: the whole pipeline on the embedded synthetic clip, in one command.

Synthesises the default clip (once; it is cached), trains ``hand4dgs`` on it with settings that
suit the machine, evaluates, prints pseudo-label vs model pose errors and image quality, and
leaves pictures of the clip in the run folder (``pictures/<clip>/``: what ``hand4dgs infer``
writes, the side-by-side video.mp4, contact_sheet.png and joint_error.png among them).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from rich.console import Console
from rich.table import Table

from hand4dgs_ns.cli.infer import Infer
from hand4dgs_ns.method_configs import hand4dgs_trainer, set_image_scale
from hand4dgs_ns.synthetic.default_clip import ensure_default_clip

CONSOLE = Console()


@dataclass(frozen=True)
class DemoSettings:
    """Training settings the demo chooses per machine."""

    steps: int
    vertex_share: float
    """Share of the steps trained with the vertex loss alone; the rest add the image loss while the
    vertex weight decays to zero (the paper's per-video schedule: two thirds)."""
    frames_per_step: int
    gaussians_per_face: int
    image_scale: float
    picture_batch_frames: int
    """Frames per forward pass and render when writing the pictures (hand4dgs infer's --batch-frames)."""
    window: Optional[int] = None
    """Frames the temporal convolution reads; None keeps the method's."""
    context_gradient: bool = True
    """Train the crop backbone through every window frame (off: the predicted frames' crops only)."""


CPU_SETTINGS = DemoSettings(
    steps=3500, vertex_share=0.75, frames_per_step=4, gaussians_per_face=0, image_scale=0.5, picture_batch_frames=8, window=5,
    context_gradient=False)
"""7 to 10 minutes on a 2-core CPU (7 min 42 s measured where one Gaussian per face took 8 min 49 s
at the same moment of the machine, whose speed varies by a third from hour to hour; docs/benchmarks.md,
"The CPU demo with one Gaussian per vertex"):
one Gaussian per vertex and none inside the faces (1,609 a hand, against the method's 33,569),
half-resolution renders; small picture batches, as the CPU rasteriser's tensors for 256 frames
cost more in page faults than they save. At half resolution a hand is a few hundred pixels, so the
vertices' Gaussians cover it: against one Gaussian per face as well (4,805 a hand) image steps took
about 30% less time, and on three clips crop PSNR moved +0.36, -0.08 and +0.32 dB, MPJPE -0.4 to
-0.5 mm and RA-MPJPE -0.3 to -0.4 mm, Acc Err level.
Vertex steps cost about a third of image steps on a CPU (a quarter with one Gaussian per face);
of the 3500 steps the finger poses get 2625 and the image loss 875. Against 3000 and 1000 (one
Gaussian per face): PSNR 0.4 dB lower, MPJPE 0.3 mm higher, RA-MPJPE and
Acc Err level, for about a minute less (with 2000 vertex steps, RA-MPJPE ended 3.6 mm higher; with
700 image steps, PSNR 2.4 dB lower).
The method's coarse-loss factors, counted in rendered pixels, are halved with the renders. A
5-frame window: the method's 9 costs 1.7x per step here, and at this size it lowered Acc Err by
4-22% for 0.1 dB of PSNR (docs/benchmarks.md). The crop CNN trains on the predicted frames' crops
only (context_gradient off): its backward pass, most of a CPU step, shrinks five times, and the
demo took 9 min 32 s instead of 11 min 38 s on a 2-core CPU, for PSNR -0.3 dB, RA-MPJPE +0.5 mm
and Acc Err 2.5 instead of 2.0 (the pseudo-labels': 17.7)."""
CUDA_SETTINGS = DemoSettings(steps=30000, vertex_share=2 / 3, frames_per_step=8, gaussians_per_face=10, image_scale=1.0, picture_batch_frames=256)
"""The paper's per-video schedule at full resolution."""


@dataclass(frozen=True)
class Demo:
    """Synthesise the default clip, train hand4dgs on it, evaluate, print a summary and write pictures of the clip."""

    output_dir: Path = Path("outputs/demo")
    """Where the run (config, checkpoints, eval JSON, pictures) is written."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device; 'auto' takes CUDA when present."""
    steps: Optional[int] = None
    """Training steps (default: 3500 on CPU, 30000 on CUDA); the schedule scales with them."""
    viewer: bool = False
    """Show the browser viewer during training (it keeps running after training ends)."""

    def main(self) -> None:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        settings = CUDA_SETTINGS if device == "cuda" else CPU_SETTINGS
        steps = self.steps or settings.steps
        started = time.perf_counter()
        data = ensure_default_clip()
        config = demo_config(data, self.output_dir, device, settings, steps, self.viewer)
        CONSOLE.print(f"[bold]Training hand4dgs on {data}[/] ({steps} steps, {device}). The same run with ns-train:")
        CONSOLE.print(f"  {ns_train_command(config)}", highlight=False, soft_wrap=True)
        config.set_timestamp()
        config.save_config()
        trainer = setup_trainer(config)
        trainer.train()
        results = trainer.pipeline.get_average_eval_image_metrics(get_std=True)
        run_dir = config.get_base_dir()
        (run_dir / "eval.json").write_text(json.dumps({"method_name": "hand4dgs", "results": results}, indent=2))
        print_summary(results)
        pictures = run_dir / "pictures"
        CONSOLE.print(f"[bold]Writing pictures of {data.name}[/] with hand4dgs infer:", highlight=False)
        Infer(load_config=run_dir / "config.yml", data=data, output_dir=pictures, device=device, batch_frames=settings.picture_batch_frames).main()
        CONSOLE.print(
            f"Run folder: [bold]{run_dir}[/] (config.yml, checkpoints, eval.json, pictures); "
            f"total {time.perf_counter() - started:.0f} s.\n"
            f"Pictures: {pictures / data.name}/ (video.mp4, contact_sheet.png, joint_error.png)\n"
            f"View it: ns-viewer --load-config {run_dir / 'config.yml'}",
            highlight=False, soft_wrap=True,
        )


def setup_trainer(config: TrainerConfig) -> Trainer:
    """A single-process trainer, set up as ns-train's ``train_loop`` sets it up: seeded from
    ``config.machine.seed``, and with cuDNN's autotuner on (importing ns-train's module does that)."""
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def demo_config(data: Path, output_dir: Path, device: str, settings: DemoSettings, steps: int, viewer: bool):
    """The TrainerConfig the demo trains with (exactly what :func:`ns_train_command` spells out)."""
    config = hand4dgs_trainer(steps)
    config.output_dir = output_dir
    config.experiment_name = "demo"
    config.machine.device_type = device
    config.vis = "viewer" if viewer else "tensorboard"
    config.steps_per_eval_all_images = steps + 1  # the demo evaluates once, after training
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.frames_per_step = settings.frames_per_step
    config.pipeline.model.gaussians_per_face = settings.gaussians_per_face
    if settings.window is not None:
        config.pipeline.model.window = settings.window
    config.pipeline.model.context_gradient = settings.context_gradient
    config.pipeline.model.image_loss_from = round(steps * settings.vertex_share)
    config.pipeline.model.vertex_decay_steps = steps - config.pipeline.model.image_loss_from
    set_image_scale(config, settings.image_scale)
    return config


def ns_train_command(config) -> str:
    """The ns-train command line that trains exactly like ``config`` (a :func:`demo_config`)."""
    dm, model = config.pipeline.datamanager, config.pipeline.model
    args = [
        "ns-train", "hand4dgs", "--data", str(dm.data), "--output-dir", str(config.output_dir),
        "--experiment-name", config.experiment_name, "--machine.device-type", config.machine.device_type,
        "--vis", config.vis, "--max-num-iterations", str(config.max_num_iterations),
        "--steps-per-eval-all-images", str(config.steps_per_eval_all_images),
        "--pipeline.datamanager.frames-per-step", str(dm.frames_per_step),
        "--pipeline.datamanager.image-scale", str(dm.image_scale),
        "--pipeline.model.gaussians-per-face", str(model.gaussians_per_face),
        "--pipeline.model.window", str(model.window),
        "--pipeline.model.context-gradient", str(model.context_gradient),
        "--pipeline.model.image-loss-from", str(model.image_loss_from),
        "--pipeline.model.vertex-decay-steps", str(model.vertex_decay_steps),
        "--pipeline.model.relative-vertex-weight", str(model.relative_vertex_weight),
        "--pipeline.model.coarse-loss-factors", *map(str, model.coarse_loss_factors),
    ]
    for name, group in config.optimizers.items():
        args += [f"--optimizers.{name}.optimizer.lr", str(group["optimizer"].lr)]
        args += [f"--optimizers.{name}.scheduler.max-steps", str(group["scheduler"].max_steps)]
    return shlex.join(args)


def print_summary(results: dict) -> None:
    """Pseudo-label vs model table (pose in mm; image quality on hand crops)."""
    smoothed = any(key.startswith("smoothed_pseudo_") for key in results)  # the training targets, when smoothed
    table = Table(title="hand4dgs demo: pseudo-labels -> model (held-out evaluation)")
    table.add_column("metric")
    table.add_column("pseudo-labels", justify="right")
    if smoothed:
        table.add_column("smoothed labels (targets)", justify="right")
    table.add_column("model", justify="right")
    for label, key in (("MPJPE (mm)", "mpjpe_mm"), ("RA-MPJPE (mm)", "ra_mpjpe_mm"), ("Acc Err (mm/frame^2)", "acc_err_mm")):
        labels = [results.get(f"pseudo_{key}")] + ([results.get(f"smoothed_pseudo_{key}")] if smoothed else [])
        table.add_row(label, *map(_fmt, labels), _fmt(results.get(key)))
    for label, key, digits in (("PSNR (dB, hand crops)", "psnr", 2), ("SSIM (hand crops)", "ssim", 3)):
        table.add_row(label, *["-"] * (1 + smoothed), _fmt(results.get(key), digits))
    CONSOLE.print(table)


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
