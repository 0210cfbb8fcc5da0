"""Temporal filtering of per-frame hand tracks, pure functions.

Frames are the first axis; hand slots the second (0 = left, 1 = right). A hand's track is cut
into runs of consecutive usable frames, and nothing is mixed across frames where it is not usable.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.ndimage import gaussian_filter1d
from torch import Tensor


def valid_runs(valid: Bool[Tensor, "F"]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of consecutive True frames, in order."""
    v = np.concatenate([[False], valid.cpu().numpy().astype(bool), [False]])
    edges = np.flatnonzero(v[1:] != v[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def smooth_tracks(tracks: Float[Tensor, "F H *rest"], valid: Bool[Tensor, "F H"], sigma: float) -> Float[Tensor, "F H *rest"]:
    """Gaussian-smoothed copy of ``tracks`` along frames (standard deviation ``sigma`` frames),
    each hand within its runs of usable frames (a run's ends repeat their edge frame); frames
    where a hand is not usable keep their values. ``sigma`` 0 returns the tracks unchanged."""
    if sigma <= 0:
        return tracks
    source = tracks.detach().cpu().numpy()
    out = source.copy()
    for hand in range(valid.shape[1]):
        for start, stop in valid_runs(valid[:, hand]):
            # scipy's filter: a Gaussian truncated at 4 sigma, the run's edge frames repeated beyond it.
            out[start:stop, hand] = gaussian_filter1d(source[start:stop, hand], sigma, axis=0, mode="nearest")
    return torch.from_numpy(out).to(tracks.device, tracks.dtype)
