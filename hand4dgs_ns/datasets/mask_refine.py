"""Hand masks moved onto the frame: each drawn hand re-segmented from the frame's colours.

Masks drawn from a hand estimator's meshes (HaMeR's, as the H2O and ARCTIC readers draw them)
show the hands where the estimator put them, not where the frame shows them; the image losses
then pull the model's hands towards the estimate. Here each drawn hand seeds OpenCV's GrabCut
(the segmentation itself is OpenCV's; only the seed is built here): the hand's core (the drawn
hand eroded by ``core`` of its radius) is hand, the ring from the core to ``reach`` of its radius
beyond the drawn outline is undecided, and the rest, occluders and the other hand's core
included, is background. The radius is that of a disc of the drawn hand's area, so the seed scales with
how large the hand appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import UInt8

from hand4dgs_ns.data.sequence_format import MASK_BACKGROUND, MASK_LEFT, MASK_OCCLUDER, MASK_RIGHT, read_rgb
from hand4dgs_ns.errors import file_error

_MIN_AREA = 20  # pixels; a smaller drawn hand is kept as drawn (too few colours to model)


@dataclass(frozen=True)
class MaskRefinement:
    """How far a drawn hand may move when it is re-segmented from the frame."""

    core: float = 0.3
    """Share of the hand's radius eroded from the drawn hand to give the pixels kept as hand."""
    reach: float = 0.5
    """Share of the hand's radius beyond the drawn outline up to which the colours decide (at
    least one working pixel more than ``core``)."""
    iterations: int = 3
    """GrabCut iterations."""
    work_radius: float = 32.0
    """A hand whose radius is larger (pixels) is re-segmented at the scale that makes it this
    large and its outline resampled to the frame: GrabCut's time grows with the pixels."""


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _segment_hand(
    image: np.ndarray, labels: np.ndarray, hand: int, settings: MaskRefinement
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """Within a window around the drawn hand: the re-segmented hand and the pixels decided anew
    (the drawn hand and the ring round it), both bool, and the window; None to keep it as drawn."""
    ys, xs = np.nonzero(labels == hand)
    if len(ys) < _MIN_AREA:
        return None
    radius = np.sqrt(len(ys) / np.pi)
    # A large hand is re-segmented at a scale where its radius is settings.work_radius pixels.
    scale = min(1.0, settings.work_radius / radius)
    inner = max(1, round(settings.core * radius * scale))
    outer = max(inner + 1, round(settings.reach * radius * scale))
    # GrabCut models the colours of the hand and of what surrounds it, so it runs on a window
    # around the hand with room for background (three times the ring) on every side.
    pad = int(np.ceil(3 * outer / scale)) + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, labels.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, labels.shape[1])
    window = (slice(y0, y1), slice(x0, x1))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    # Pixel-centred nearest sampling keeps the labels on the colours they were drawn over.
    window_labels = cv2.resize(labels[window], size, interpolation=cv2.INTER_NEAREST_EXACT)
    window_bgr = cv2.resize(np.ascontiguousarray(image[window][..., ::-1]), size, interpolation=cv2.INTER_AREA)
    drawn = (window_labels == hand).astype(np.uint8)
    core = cv2.erode(drawn, _disc(inner))
    if not core.any():
        return None
    near = cv2.dilate(drawn, _disc(outer))
    seed = np.full(drawn.shape, cv2.GC_BGD, np.uint8)
    seed[near > 0] = cv2.GC_PR_BGD
    seed[drawn > 0] = cv2.GC_PR_FGD
    seed[core > 0] = cv2.GC_FGD
    seed[window_labels == MASK_OCCLUDER] = cv2.GC_BGD
    other = (window_labels == (MASK_LEFT + MASK_RIGHT - hand)).astype(np.uint8)
    seed[cv2.erode(other, _disc(inner)) > 0] = cv2.GC_BGD
    if not (seed == cv2.GC_BGD).any():
        return None
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's colour models start from k-means: the same frame gives the same mask
    cv2.grabCut(window_bgr, seed, None, *models, settings.iterations, cv2.GC_INIT_WITH_MASK)
    hand_pixels = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.float32)
    full = (x1 - x0, y1 - y0)
    segmented = cv2.resize(hand_pixels, full, interpolation=cv2.INTER_LINEAR) >= 0.5
    decided = cv2.resize(near, full, interpolation=cv2.INTER_NEAREST_EXACT) > 0
    decided |= labels[window] == hand  # the whole drawn hand, whatever the resampling
    return segmented, decided, window


def refine_hand_masks(
    image: UInt8[np.ndarray, "H W 3"], labels: UInt8[np.ndarray, "H W"], settings: MaskRefinement = MaskRefinement()
) -> UInt8[np.ndarray, "H W"]:
    """Labels (format v1: 0 background, 1 left, 2 right, 3 occluder) whose hands follow the frame.

    Args:
        image: the frame, RGB.
        labels: the drawn labels; occluder pixels stay occluders and bound the hands.
        settings: how far a hand may move.

    A hand changes only within its drawn pixels and the ring round them; a pixel both hands
    claim goes to the hand drawn there, else to the hand whose drawn outline is nearer.
    """
    out = labels.copy()
    claims: dict[int, np.ndarray] = {}
    for hand in (MASK_LEFT, MASK_RIGHT):
        result = _segment_hand(image, labels, hand, settings)
        if result is None:
            continue
        segmented, decided, window = result
        out[window][decided & (labels[window] == hand)] = MASK_BACKGROUND
        claim = np.zeros(labels.shape, bool)
        claim[window] = segmented & decided & (labels[window] != MASK_OCCLUDER)
        claims[hand] = claim
    if len(claims) == 2:
        both = claims[MASK_LEFT] & claims[MASK_RIGHT]
        if both.any():
            # Distance of every pixel to each drawn hand; the nearer hand keeps a shared pixel.
            distance = {h: cv2.distanceTransform((labels != h).astype(np.uint8), cv2.DIST_L2, 3) for h in claims}
            to_left = both & (distance[MASK_LEFT] <= distance[MASK_RIGHT])
            claims[MASK_LEFT] &= ~(both & ~to_left)
            claims[MASK_RIGHT] &= ~to_left
    for hand, claim in claims.items():
        free = claim & ((out == MASK_BACKGROUND) | (labels == hand))
        out[free] = hand
    return out


def refine_frame_masks(
    image_path: Path, labels: UInt8[np.ndarray, "H W"], settings: MaskRefinement = MaskRefinement()
) -> UInt8[np.ndarray, "H W"]:
    """:func:`refine_hand_masks` against the frame at ``image_path``; one sentence naming the
    file if it cannot be read or is not the labels' size."""
    image = read_rgb(image_path)
    if image.shape[:2] != labels.shape:
        size, expected = f"{image.shape[1]}x{image.shape[0]}", f"{labels.shape[1]}x{labels.shape[0]}"
        raise file_error(image_path, f"is {size} but its camera's frames are {expected}", "restore the frame")
    return refine_hand_masks(image, labels, settings)
