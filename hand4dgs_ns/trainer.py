"""nerfstudio's trainer, with checkpoints that appear whole or not at all.

nerfstudio writes ``step-*.ckpt`` in place, so a run killed while saving leaves a truncated file
that ``--load-dir``, ``ns-eval`` and ``ns-viewer`` then pick as the newest checkpoint. Here each
checkpoint is written beside the checkpoint folder (whose every file nerfstudio parses as a step
number) and renamed into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread

from hand4dgs_ns.output_folder import atomic_file


@dataclass
class Hand4DGSTrainerConfig(TrainerConfig):
    """nerfstudio's trainer configuration; the trainer saves checkpoints atomically."""

    _target: Type = field(default_factory=lambda: Hand4DGSTrainer)


class Hand4DGSTrainer(Trainer):
    """nerfstudio's :class:`Trainer` whose checkpoints are written under a temporary name, then renamed."""

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        with atomic_file(path, scratch=self.checkpoint_dir.parent) as tmp:
            torch.save(state, tmp)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != path:
                    old.unlink()
