"""Hand skeletons drawn over an image (the viewer's joint overlay, the pictures of ``infer``)."""

from __future__ import annotations

import cv2
import numpy as np

from hand4dgs_ns.eval.metrics import OPENPOSE_BONES

SLOT_COLOURS = ((255, 140, 40), (40, 160, 255))  # RGB: left hand orange, right hand blue


def draw_skeletons(image: np.ndarray, joints_px: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with each valid hand's OpenPose skeleton drawn on it, in place.

    Args:
        joints_px: (2, 21, 2) pixel coordinates; valid: (2,) bool.
    """
    out = image
    height, width = image.shape[:2]
    thickness = max(1, round(height / 240))
    # Joints off the image by more than its size (or not finite: behind the camera) are not drawn,
    # nor their bones; the rest of the hand is.
    limit = 2 * max(height, width)
    for slot in range(2):
        if not valid[slot]:
            continue
        points = joints_px[slot]
        shown = np.isfinite(points).all(axis=1) & (np.abs(np.nan_to_num(points, nan=np.inf)) < limit).all(axis=1)
        pixel = np.where(shown[:, None], points, 0).round().astype(np.int32)
        for a, b in OPENPOSE_BONES:
            if shown[a] and shown[b]:
                cv2.line(out, tuple(map(int, pixel[a])), tuple(map(int, pixel[b])), SLOT_COLOURS[slot], thickness, cv2.LINE_AA)
        for p in pixel[shown]:
            cv2.circle(out, tuple(map(int, p)), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
