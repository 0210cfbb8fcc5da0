"""Seeded procedural noise evaluated on 3-D points (torch), shared by skin and room textures.

Sums of random plane waves stand in for gradient noise: they are smooth, isotropic on
average, need no lattice hashing, and evaluate as one matrix product, which is what a
vectorised CPU renderer wants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class WaveNoise:
    """A fixed random sum of plane waves; call :meth:`__call__` on points to evaluate it."""

    directions: Float[Tensor, "K 3"]
    """Wave vectors (unit direction times angular frequency, radians per metre)."""
    phases: Float[Tensor, " K"]
    """Phase of each wave."""
    amplitudes: Float[Tensor, " K"]
    """Amplitude of each wave, normalised so the sum has unit standard deviation."""

    def __call__(self, points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b"]:
        """Noise values (about unit standard deviation, zero mean) at ``points``."""
        waves = points.to(self.directions.dtype) @ self.directions.T + self.phases
        return torch.sin(waves) @ self.amplitudes


def wave_noise(rng: np.random.Generator, low: float, high: float, count: int = 12) -> WaveNoise:
    """Noise with angular frequencies between ``low`` and ``high`` radians per metre.

    Amplitudes fall as 1/frequency (a rough fractal look) and are normalised to unit variance.
    """
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    frequency = np.exp(rng.uniform(np.log(low), np.log(high), count))
    amplitude = 1.0 / frequency
    amplitude /= np.sqrt(0.5 * (amplitude**2).sum())
    return WaveNoise(
        directions=torch.from_numpy(direction * frequency[:, None]).float(),
        phases=torch.from_numpy(rng.uniform(0, 2 * np.pi, count)).float(),
        amplitudes=torch.from_numpy(amplitude).float(),
    )


def cell_hash(i: Tensor, j: Tensor, salt: float = 0.0) -> Tensor:
    """A deterministic pseudo-random value in [0, 1) per integer cell (i, j) (the classic sine hash)."""
    x = torch.sin(i.double() * 12.9898 + j.double() * 78.233 + salt * 37.719) * 43758.5453
    return (x - torch.floor(x)).float()
