"""Per-video training benchmark: trains hand4dgs through nerfstudio's Trainer and prints speed,
memory and the final metrics as one JSON line (plus a short table).

    python scripts/bench_train.py --data <sequence> --steps 30000 [--window 1] [--per-gaussian-embeddings]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import tyro

from hand4dgs_ns.method_configs import hand4dgs_trainer


@dataclass
class BenchTrain:
    data: Path
    """Sequence folder to train on."""
    steps: int = 30000
    """Training steps (the whole schedule scales with it)."""
    window: int = 5
    """Temporal window (1 = no TC)."""
    per_gaussian_embeddings: bool = False
    """The per-Gaussian embedding ablation."""
    frames_per_step: int = 8
    """Frames per step."""
    gaussians_per_face: int = 10
    """Gaussians per face."""
    image_scale: float = 1.0
    """Render scale."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Training device."""
    output_dir: Path = Path("/tmp/bench_train")
    """Run folder root."""
    seed: int = 42
    """Trainer seed."""
    json_out: Optional[Path] = None
    """Also write the result JSON here."""
    compile: bool = False
    """torch.compile the hand branches."""
    profile_steps: int = 0
    """After training, profile this many extra steps and print the top operators."""

    def main(self) -> dict:
        config = hand4dgs_trainer(self.steps)
        config.output_dir = self.output_dir
        config.machine.device_type = self.device
        config.machine.seed = self.seed
        config.vis = "tensorboard"
        config.steps_per_eval_batch = 0
        config.steps_per_eval_image = 0
        config.steps_per_eval_all_images = self.steps + 1
        config.steps_per_save = self.steps
        config.logging.local_writer.enable = False
        dm, model = config.pipeline.datamanager, config.pipeline.model
        dm.data = self.data
        dm.frames_per_step = self.frames_per_step
        dm.image_scale = self.image_scale
        model.window = self.window
        model.per_gaussian_embeddings = self.per_gaussian_embeddings
        model.gaussians_per_face = self.gaussians_per_face
        model.compile = self.compile
        config.set_timestamp()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train()
        if self.device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        metrics = trainer.pipeline.get_average_eval_image_metrics()
        result = {
            "steps": self.steps,
            "window": self.window,
            "per_gaussian_embeddings": self.per_gaussian_embeddings,
            "frames_per_step": self.frames_per_step,
            "gaussians_per_face": self.gaussians_per_face,
            "compile": self.compile,
            "num_gaussians": sum(b.num_gaussians for b in trainer.pipeline.model.branches),
            "it_per_s": self.steps / wall,
            "wall_s": wall,
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if self.device == "cuda" else None,
            "device": torch.cuda.get_device_name() if self.device == "cuda" else "cpu",
            **metrics,
        }
        print("RESULT " + json.dumps(result))
        if self.profile_steps:
            profile(trainer.pipeline, self.profile_steps)
        if self.json_out:
            self.json_out.write_text(json.dumps(result, indent=2))
        return result


def profile(pipeline, steps: int) -> None:
    """Top operators of a few forward+backward passes (CPU and CUDA time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    pipeline.train()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        for step in range(steps):
            _, losses, _ = pipeline.get_train_loss_dict(step)
            sum(losses.values()).backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=30))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=20))


if __name__ == "__main__":
    tyro.cli(BenchTrain).main()
