"""Seeded 1-D random signals for motion and label noise: smooth noise, AR(1) drift, bumps."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from scipy.ndimage import gaussian_filter1d


def smooth_noise(
    rng: np.random.Generator, num: int, std: float | np.ndarray, sigma_frames: float, dims: int = 1
) -> Float[np.ndarray, "num dims"]:
    """Gaussian-filtered white noise with the given stationary standard deviation per dimension.

    ``sigma_frames`` is the filter width in frames (larger = slower). Extra samples on both
    ends keep the filter's edge handling out of the returned range.
    """
    pad = int(np.ceil(4 * sigma_frames)) + 1
    white = rng.standard_normal((num + 2 * pad, dims))
    smooth = gaussian_filter1d(white, sigma=sigma_frames, axis=0, mode="nearest")[pad : pad + num]
    # Filtering unit white noise with a unit-sum Gaussian leaves variance 1 / (2 sqrt(pi) sigma).
    gain = np.sqrt(2.0 * np.sqrt(np.pi) * sigma_frames) if sigma_frames > 0 else 1.0
    return smooth * gain * np.asarray(std, dtype=np.float64)


def ar1_noise(
    rng: np.random.Generator, num: int, std: float | np.ndarray, rho: float, dims: int = 1
) -> Float[np.ndarray, "num dims"]:
    """Stationary AR(1) process ``x_t = rho x_{t-1} + e_t`` with the given marginal standard deviation."""
    std = np.asarray(std, dtype=np.float64)
    innovation = rng.standard_normal((num, dims)) * np.sqrt(1.0 - rho * rho)
    out = np.empty((num, dims))
    state = rng.standard_normal(dims)
    for t in range(num):
        state = rho * state + innovation[t]
        out[t] = state
    return out * std


def bump(t: Float[np.ndarray, " n"], centre: float, half_width: float) -> Float[np.ndarray, " n"]:
    """Smooth 0->1->0 window (raised cosine) centred at ``centre`` and zero beyond ``half_width``."""
    x = np.clip((t - centre) / half_width, -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))
