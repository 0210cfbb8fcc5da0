"""``hand4dgs tto``: test-time optimisation of a trained run on a new video.

The paper's optional last step for a generalised model: a few hundred steps of the image loss on
the new video. By default they fine-tune the whole network: the pose path (backbone, TC, heads),
pulled towards the pseudo-labels by the vertex loss at the share the run ended with, and the
appearance (per-vertex embeddings, colour and scale decoders, base scales, opacities, the matte).
``--no-free-pose`` fine-tunes the appearance alone, as the paper does, and keeps the feed-forward
pose. The learning rates start at the run's first-step rates and decay to its final ones over the
steps. The result is a normal nerfstudio run folder (config.yml and a checkpoint, its own step
counter and learning-rate schedule from zero) that ``ns-eval``, ``ns-render``, ``ns-viewer``,
``hand4dgs infer`` and ``hand4dgs export`` load.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from nerfstudio.engine.trainer import TrainerConfig
from rich.console import Console

from hand4dgs_ns.cli.demo import setup_trainer
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.inference.run import TrainedRun, network_weights, read_run


@dataclass(frozen=True)
class TTO:
    """Fine-tune a trained run on a new video (test-time optimisation); writes a new run folder."""

    load_config: Path
    """The trained run's config.yml (hand4dgs-generalized, hand4dgs or an earlier tto run); its newest
    checkpoint is used, or the step its load_step names."""
    data: Path
    """The new video: a sequence folder, a folder of them, or an H2O or ARCTIC folder."""
    steps: int = 500
    """Optimisation steps (paper: 500)."""
    free_pose: bool = True
    """Fine-tune the pose path too (backbone, TC, shape/pose/translation heads); --no-free-pose
    fine-tunes the appearance alone (the paper's TTO). On two held-out videos of a CPU-size
    generalised run, 500 steps: held-out PSNR +5.0 and +4.7 dB against +0.8 and +0.2 with the
    appearance alone (docs/benchmarks.md)."""
    vertex_weight: Optional[float] = None
    """With --free-pose, the vertex loss's share (its pull towards the pseudo-labels; 1: as in the
    vertex phase); default: the trained run's share at the loaded checkpoint's step
    (hand4dgs-generalized ends with 0.1; a per-video run with none, so its pose then follows the
    pictures alone)."""
    output_dir: Path = Path("outputs")
    """Root of the new run folder (<output-dir>/<experiment>/<the run's method>/<time>/, with a tto.json beside its config)."""
    experiment_name: Optional[str] = None
    """Experiment folder name; default: the data folder's name."""
    frames_per_step: Optional[int] = None
    """Frames per step; default: the trained run's."""
    eval_interval: int = 8
    """Frames 0, n, 2n, ... are held out: the before/after PSNR is measured on them."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to optimise; 'auto' takes CUDA when present."""

    def main(self) -> None:
        if self.steps < 1:
            raise Hand4DGSError(f"--steps is {self.steps}; pass 1 or more optimisation steps.")
        if self.vertex_weight is not None and self.vertex_weight < 0:
            raise Hand4DGSError(f"--vertex-weight is {self.vertex_weight}; pass a share of 0 or more (1: the vertex phase's pull).")
        run = read_run(self.load_config)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        config = tto_config(run, self, device)
        trainer = setup_trainer(config)
        network = trainer.pipeline.model.network
        network.load_state_dict(network_weights(run))
        if not self.free_pose:
            for p in network.pose_parameters():
                p.requires_grad_(False)
        console = Console()
        before = _image_metrics(trainer.pipeline)
        started = time.perf_counter()
        trainer.train()
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        after = _image_metrics(trainer.pipeline)
        base = config.get_base_dir()
        summary = {
            "steps": self.steps, "free_pose": self.free_pose, "vertex_share": config.pipeline.model.vertex_weight_floor,
            "wall_s": wall, "before": before, "after": after, "from": str(run.config_path), "from_step": run.step,
        }
        (base / "tto.json").write_text(json.dumps(summary, indent=2))
        console.print(
            f"Test-time optimisation: {self.steps} steps in {wall:.1f} s on {device}; hand-crop PSNR on held-out frames "
            f"{before.get('psnr', float('nan')):.2f} -> {after.get('psnr', float('nan')):.2f} dB, "
            f"SSIM {before.get('ssim', float('nan')):.3f} -> {after.get('ssim', float('nan')):.3f}.\n"
            f"Run folder: [bold]{base}[/] (load it with ns-eval, ns-render, ns-viewer, hand4dgs infer or export: "
            f"--load-config {base / 'config.yml'})",
            highlight=False,
            soft_wrap=True,
        )


def tto_config(run: TrainedRun, args: TTO, device: str) -> TrainerConfig:
    """The trained run's configuration turned into a short image-loss run on ``args.data``."""
    config = copy.deepcopy(run.config)
    steps = args.steps
    # The method name stays the trained run's: nerfstudio's tools look it up among the registered methods.
    config.output_dir = args.output_dir
    config.experiment_name = args.experiment_name or Path(args.data).resolve().name
    config.timestamp = "{timestamp}"
    config.set_timestamp()
    config.load_dir = config.load_checkpoint = None
    config.load_step = None
    config.machine.device_type = device
    config.vis = "tensorboard"
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = steps + 1
    dm = config.pipeline.datamanager
    dm.data = Path(args.data)
    dm.dataparser.data = Path(args.data)
    dm.dataparser.eval_mode = "interval"
    dm.dataparser.eval_interval = args.eval_interval
    dm.dataparser.eval_sequences = ()
    if args.frames_per_step is not None:
        dm.frames_per_step = args.frames_per_step
    model = config.pipeline.model
    # The image loss from the first step and the vertex loss at a fixed share (its floor, reached at
    # once), so a later TTO of this run reads the same share back.
    model.vertex_weight_floor = vertex_share(run) if args.vertex_weight is None else args.vertex_weight
    model.image_loss_from = 0
    model.vertex_decay_steps = 0
    # A few hundred steps do not repay torch.compile's pause before the first (tens of seconds on a fresh machine).
    model.compile_graphs = False
    for group in config.optimizers.values():
        group["scheduler"].max_steps = steps
    config.save_config()
    return config


def vertex_share(run: TrainedRun) -> float:
    """The vertex loss's share at the run's checkpoint: TTO's default. With a frozen pose path it
    only reports; with --free-pose the full share of the vertex phase would pull a pose the image
    phase moved off the pseudo-labels back to them (held-out PSNR -0.4 dB instead of +5.0 at CPU
    size, docs/benchmarks.md)."""
    return run.config.pipeline.model.loss_schedule().vertex_weight(run.step)


def _image_metrics(pipeline) -> dict:
    results = pipeline.get_average_eval_image_metrics()
    return {key: results[key] for key in ("psnr", "ssim") if key in results}
