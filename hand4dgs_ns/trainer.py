"""nerfstudio's trainer, with checkpoints that appear whole or not at all.

nerfstudio writes ``step-*.ckpt`` in place, so a run killed while saving leaves a truncated file
that ``--load-dir``, ``ns-eval`` and ``ns-viewer`` then pick as the newest checkpoint. Here each
checkpoint is written beside the checkpoint folder (whose every file nerfstudio parses as a step
number) and renamed into it.

In several processes (DDP) only rank 0 writes: checkpoints, logs and, unlike nerfstudio's own
trainer, ``dataparser_transforms.json``. A checkpoint holds the model's weights under the same
names however many processes trained it (without DDP's ``module.``), so ``hand4dgs infer`` and
``tto`` read it like any other, and ``--load-dir`` resumes it with any number of processes. A
resumed run seeds its random draws (frames, backgrounds, jitters) by the step it resumes at, and
its progress line counts to the step it will end at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms, writer
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from hand4dgs_ns.cpu_memory import keep_freed_memory
from hand4dgs_ns.errors import file_error
from hand4dgs_ns.output_folder import atomic_file
from hand4dgs_ns.pipeline import CheckpointMismatch, Hand4DGSPipelineConfig, settle_color_crops, single_process_key


@dataclass
class Hand4DGSTrainerConfig(TrainerConfig):
    """nerfstudio's trainer configuration; the trainer saves checkpoints atomically."""

    _target: Type = field(default_factory=lambda: Hand4DGSTrainer)

    # ns-train prints and writes the config before the pipeline is built: the colour-crop scale is
    # settled first, so both show the crops the run cuts and a refused setting prints or writes nothing.
    def print_to_terminal(self) -> None:
        self._settle()
        super().print_to_terminal()

    def save_config(self) -> None:
        self._settle()
        super().save_config()

    def _settle(self) -> None:
        if isinstance(self.pipeline, Hand4DGSPipelineConfig):
            settle_color_crops(self.pipeline)


class Hand4DGSTrainer(Trainer):
    """nerfstudio's :class:`Trainer` whose checkpoints are written under a temporary name, then renamed."""

    def train(self) -> None:
        if not comms.is_main_process():
            # nerfstudio's train() starts by writing this file from every rank; rank 0 writes it.
            self.pipeline.datamanager.train_dataparser_outputs.save_dataparser_transform = lambda path: None
        if torch.device(self.device).type == "cpu":
            keep_freed_memory()
        super().train()
        if self.config.viewer.quit_on_train_completion:
            stop_viewer_renders(getattr(self, "viewer_state", None))

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        super().setup(test_mode)
        from hand4dgs_ns.method_configs import schedule_warning  # the method configs import this module

        warning = schedule_warning(self.config, self._start_step)
        if warning and comms.is_main_process():
            CONSOLE.print(f"[bold yellow]Warning:[/] {warning}", soft_wrap=True, highlight=False)
        if self._start_step > 0 and "max_iter" in writer.GLOBAL_BUFFER:
            # A resumed run ends at this step; nerfstudio's progress line and ETA count to
            # max-num-iterations from step 0, so they showed over 100% and a negative ETA.
            writer.GLOBAL_BUFFER["max_iter"] = self._start_step + self.config.max_num_iterations

    def _load_checkpoint(self) -> None:
        try:
            super()._load_checkpoint()
        except CheckpointMismatch as err:
            raise file_error(self.config.load_checkpoint or self.config.load_dir, err.problem, err.fix) from None
        for optimizer in self.optimizers.optimizers.values():
            match_state_layouts(optimizer)
        if self._start_step > 0:
            # nerfstudio seeds every start alike and saves no generator state, so a resumed run
            # would draw its first steps' frames, backgrounds and jitters again: seed by the step.
            offset = resume_seed_offset(self._start_step)
            torch.manual_seed(self.config.machine.seed + comms.get_rank() + offset)
            self.pipeline.reseed(offset)

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": {single_process_key(key): value for key, value in pipeline.state_dict().items()},
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


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Lay each per-parameter state tensor out like its parameter (the values unchanged).

    A loaded optimizer state keeps the memory layout it was saved in, while a parameter's layout may
    depend on the device (the small CNN's weights are channels-last on the CPU only). Fused Adam reads
    a parameter, its gradient and its moments as flat memory, so a moment in another layout than its
    parameter would update the wrong elements.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def resume_seed_offset(step: int) -> int:
    """Added to every seed of a run resumed at ``step``: the step in the bits above the seed and rank."""
    return step << 16


def stop_viewer_renders(viewer, timeout_s: float = 30.0) -> None:
    """Ends the viewer's render threads (one per connected browser) and waits for them.

    nerfstudio leaves them running when ``--viewer.quit-on-train-completion`` ends the run; a
    thread still rendering (in torch's C++ code) as the interpreter exits aborts the process
    ("terminate called without an active exception", exit 134) after a finished training.
    """
    machines = list(getattr(viewer, "render_statemachines", {}).values())
    for machine in machines:
        machine.running = False
    for machine in machines:
        machine.join(timeout_s)
