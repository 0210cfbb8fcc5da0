"""Pictures of a reconstruction a person looks at: input | render | overlay panels, a video and a contact sheet."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from hand4dgs_ns.render.skeletons import draw_skeletons

def overlay_panel(
    frame: np.ndarray, render: np.ndarray, alpha: np.ndarray, joints_px: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """The frame with the rendered hands blended in and each valid hand's skeleton drawn on top.

    Args:
        frame: (H, W, 3) uint8.
        render, alpha: (H, W, 3) and (H, W, 1) floats in [0, 1].
        joints_px: (2, 21, 2) pixel coordinates; valid: (2,) bool.
    """
    blended = frame.astype(np.float32) * (1 - 0.6 * alpha) + 255.0 * render * 0.6 * alpha
    return draw_skeletons(np.ascontiguousarray(blended.clip(0, 255).astype(np.uint8)), joints_px, valid)


def panel_row(frame: np.ndarray, render: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """input | render | overlay, side by side (uint8)."""
    return np.concatenate([frame, (render * 255).round().astype(np.uint8), overlay], axis=1)


def contact_sheet(rows: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Panel rows stacked, each labelled with its frame."""
    out = []
    for row, label in zip(rows, labels):
        row = np.ascontiguousarray(row.copy())
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # white on a dark outline: readable on any frame
            cv2.putText(row, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
        out.append(row)
    return np.concatenate(out, axis=0)


def write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float) -> None:
    """H.264 video of uint8 RGB frames, through the ffmpeg binary that the imageio-ffmpeg wheel ships."""
    import imageio_ffmpeg  # imported here: only writing a video needs its 70 MB binary

    writer = None
    for frame in frames:
        h, w = frame.shape[:2]
        frame = frame[: h - h % 2, : w - w % 2]  # yuv420p needs even sizes
        if writer is None:
            writer = imageio_ffmpeg.write_frames(
                str(path), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                macro_block_size=1, ffmpeg_log_level="error",
            )
            writer.send(None)
        writer.send(np.ascontiguousarray(frame))
    if writer is not None:
        writer.close()
