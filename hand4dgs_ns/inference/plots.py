"""Plots of a reconstruction a person looks at: joint error over the frames of a video.

Drawn with matplotlib's Agg canvas on a ``Figure`` of its own (no pyplot, no display, no global
state), so any process, thread or headless machine can write them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from hand4dgs_ns.eval.metrics import joint_errors_mm

PLOT_DPI = 100
PLOT_SIZE_PX = (960, 360)
"""(width, height) of the PNGs written here."""
SERIES_COLOURS = {"model": "#1f77b4", "pseudo-labels": "#ff7f0e"}


def per_frame_errors_mm(
    joints: Float[Tensor, "F 2 21 3"], gt: Float[Tensor, "F 2 21 3"], valid: Bool[Tensor, "F 2"]
) -> tuple[Float[np.ndarray, "F"], float]:
    """Per-frame MPJPE in mm over the frame's valid hands (NaN where none is), and the mean over
    all valid hands (what metrics.json calls ``mpjpe_mm``; NaN when none is valid). Joints in metres."""
    errors = joint_errors_mm(joints.float(), gt.float()).cpu().numpy()  # (F, 2)
    ok = valid.cpu().numpy().astype(bool)
    hands = ok.sum(axis=1)
    per_frame = np.where(ok, errors, 0.0).sum(axis=1) / np.maximum(hands, 1)
    per_frame[hands == 0] = np.nan
    return per_frame, float(errors[ok].mean()) if ok.any() else math.nan


def write_joint_error_plot(
    path: Path,
    model_joints: Float[Tensor, "F 2 21 3"],
    pseudo_joints: Float[Tensor, "F 2 21 3"],
    gt_joints: Float[Tensor, "F 2 21 3"],
    valid: Bool[Tensor, "F 2"],
    title: str = "",
) -> None:
    """A PNG of :data:`PLOT_SIZE_PX`: per-frame MPJPE (mm) of the model and of the pseudo-labels
    against the ground truth, one line each, both hands averaged; frames with no valid hand are
    gaps. Joints in metres, any frame shared by all three; ``valid``: hands with ground truth
    (and, for the model, a box) that count."""
    frames = np.arange(valid.shape[0])
    figure = Figure(figsize=(PLOT_SIZE_PX[0] / PLOT_DPI, PLOT_SIZE_PX[1] / PLOT_DPI), dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # Markers keep a valid frame between two gaps visible; on long videos they would blur the line.
    marker = {"marker": "o", "markersize": 3} if len(frames) <= 100 else {}
    top = 0.0
    for name, joints in (("model", model_joints), ("pseudo-labels", pseudo_joints)):
        per_frame, mean = per_frame_errors_mm(joints, gt_joints, valid)
        mean_text = "n/a" if math.isnan(mean) else f"{mean:.1f} mm"
        axes.plot(frames, per_frame, color=SERIES_COLOURS[name], linewidth=1.2, label=f"{name} (mean {mean_text})", **marker)
        top = max(top, float(np.nanmax(per_frame, initial=0.0)))
    if top == 0.0:
        axes.text(0.5, 0.5, "no frame with a valid hand", transform=axes.transAxes, ha="center", va="center", color="0.4")
    axes.set_xlabel("frame")
    axes.set_ylabel("MPJPE (mm)")
    axes.set_xlim(0, max(len(frames) - 1, 1))
    axes.set_ylim(0, 1.08 * top if top > 0 else 1.0)
    axes.grid(True, alpha=0.3)
    axes.set_title(f"{title}: joint error per frame (both hands averaged)" if title else "Joint error per frame (both hands averaged)")
    figure.legend(loc="outside lower center", ncol=2, frameon=False)  # below the axes: it never hides a line
    figure.savefig(path, format="png")
