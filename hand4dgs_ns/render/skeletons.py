"""Hand skeletons drawn over an image (the viewer's joint overlay, the pictures of ``infer``)."""

from __future__ import annotations

import cv2
import numpy as np

# OpenPose hand skeleton (joint order in hand4dgs_ns/__init__.py): each finger from the wrist.
OPENPOSE_BONES = tuple(
    (0 if k == 0 else base + k - 1, base + k) for base in (1, 5, 9, 13, 17) for k in range(4)
)
SLOT_COLOURS = ((255, 140, 40), (40, 160, 255))  # RGB: left hand orange, right hand blue


def draw_skeletons(image: np.ndarray, joints_px: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with each valid hand's OpenPose skeleton drawn on it, in place.

    Args:
        joints_px: (2, 21, 2) pixel coordinates; valid: (2,) bool.
    """
    out = image
    thickness = max(1, round(image.shape[0] / 240))
    for slot in range(2):
        if not valid[slot] or not np.isfinite(joints_px[slot]).all():
            continue
        points = joints_px[slot].round().astype(np.int32)
        for a, b in OPENPOSE_BONES:
            cv2.line(out, tuple(map(int, points[a])), tuple(map(int, points[b])), SLOT_COLOURS[slot], thickness, cv2.LINE_AA)
        for p in points:
            cv2.circle(out, tuple(map(int, p)), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
