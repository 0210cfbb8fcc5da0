"""Hand boxes from annotated joints: what H2O and ARCTIC give instead of detections."""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float


def boxes_from_joints(
    joints_uv: Float[np.ndarray, "F 2 21 2"],
    valid: Bool[np.ndarray, "F 2"],
    width: int,
    height: int,
    margin: float = 0.2,
    min_size: float = 16.0,
) -> tuple[Float[np.ndarray, "F 2 4"], Bool[np.ndarray, "F 2"]]:
    """Boxes around projected joints, grown by ``margin`` of their size on each side, clipped to the image.

    Joints alone hug the skeleton (fingertips are joints, the palm's edge is not), hence the
    margin. A box is usable when its hand is valid and the clipped box is at least
    ``min_size`` pixels on both sides; unusable slots hold zeros.

    Returns:
        ``(bbox, box_valid)``: xyxy pixels ``(F, 2, 4)`` and ``(F, 2)`` flags.
    """
    lo = joints_uv.min(axis=2)
    hi = joints_uv.max(axis=2)
    pad = margin * (hi - lo)
    lo = np.clip(lo - pad, 0.0, [width, height])
    hi = np.clip(hi + pad, 0.0, [width, height])
    bbox = np.concatenate([lo, hi], axis=-1).astype(np.float32)
    finite = np.isfinite(bbox).all(axis=-1)
    size_ok = ((hi - lo) >= min_size).all(axis=-1)
    box_valid = valid & finite & size_ok
    bbox[~box_valid] = 0.0
    return bbox, box_valid
