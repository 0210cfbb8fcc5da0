"""Learning-rate schedule whose state holds only Python floats.

nerfstudio's ``ExponentialDecayScheduler`` computes its multiplier with numpy, so optimizer and
scheduler state dicts end up holding numpy scalars, and torch >= 2.6 (``weights_only=True`` by
default, which ``ns-eval``/``ns-render``/``ns-viewer`` use) refuses to load such checkpoints.
The same exponential decay in plain ``math`` keeps checkpoints loadable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler


@dataclass
class ExponentialDecayConfig(SchedulerConfig):
    """Exponential decay from the optimizer's learning rate to ``lr_final`` over ``max_steps``."""

    _target: Type = field(default_factory=lambda: ExponentialDecay)
    lr_final: float = 1e-5
    """Learning rate at ``max_steps`` and after."""
    max_steps: int = 30000
    """Steps over which the rate decays."""


class ExponentialDecay(Scheduler):
    """``lr(t) = lr_init^(1 - t) * lr_final^t`` with ``t = step / max_steps`` clipped to [0, 1]."""

    config: ExponentialDecayConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        log_ratio = math.log(self.config.lr_final / lr_init)
        max_steps = max(self.config.max_steps, 1)

        def multiplier(step: int) -> float:
            return math.exp(log_ratio * min(max(step / max_steps, 0.0), 1.0))

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=multiplier)
