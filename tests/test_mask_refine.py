"""Hand masks moved onto the frame's hands (GrabCut seeded by the drawn hands)."""

from __future__ import annotations

import numpy as np

from hand4dgs_ns.data.sequence_format import MASK_BACKGROUND, MASK_LEFT, MASK_OCCLUDER, MASK_RIGHT
from hand4dgs_ns.datasets.mask_refine import MaskRefinement, refine_hand_masks

H, W = 120, 160


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def _frame(hands: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A grey-green textured room with skin-coloured hands on it."""
    image = rng.normal([90, 120, 100], 12, size=(H, W, 3))
    for hand in hands:
        image[hand] = rng.normal([200, 150, 120], 8, size=(int(hand.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_drawn_hands_move_onto_the_frame_hands():
    rng = np.random.default_rng(0)
    left, right = _disc(45, 60, 18), _disc(115, 55, 16)
    image = _frame([left, right], rng)
    drawn = np.zeros((H, W), np.uint8)
    drawn[_disc(50, 64, 18)] = MASK_LEFT  # where an estimator put them: 5-6 px off
    drawn[_disc(111, 51, 17)] = MASK_RIGHT
    refined = refine_hand_masks(image, drawn)
    assert _iou(drawn == MASK_LEFT, left) < 0.75 and _iou(drawn == MASK_RIGHT, right) < 0.75
    assert _iou(refined == MASK_LEFT, left) > 0.9 and _iou(refined == MASK_RIGHT, right) > 0.9
    assert set(np.unique(refined)) == {MASK_BACKGROUND, MASK_LEFT, MASK_RIGHT}


def test_occluders_stay_and_far_pixels_do_not_change():
    rng = np.random.default_rng(1)
    hand = _disc(80, 60, 20)
    image = _frame([hand], rng)
    # A forearm of the hand's own colour, labelled occluder: GrabCut must not take it.
    arm = np.zeros((H, W), bool)
    arm[70:, 70:90] = True
    image[arm & ~hand] = image[hand][: int((arm & ~hand).sum())]
    drawn = np.zeros((H, W), np.uint8)
    drawn[_disc(84, 57, 20)] = MASK_RIGHT
    drawn[arm & ~_disc(84, 57, 20)] = MASK_OCCLUDER
    refined = refine_hand_masks(image, drawn, MaskRefinement(core=0.3, reach=0.5))
    assert (refined[drawn == MASK_OCCLUDER] == MASK_OCCLUDER).all()
    assert _iou(refined == MASK_RIGHT, hand & (drawn != MASK_OCCLUDER)) > 0.9
    # Beyond the reach (half the hand's radius, 10 px) nothing may turn into hand.
    assert not (refined[~_disc(84, 57, 20 + 11)] == MASK_RIGHT).any()


def test_a_large_hand_is_segmented_at_a_smaller_scale_and_resampled():
    rng = np.random.default_rng(3)
    hand = _disc(80, 60, 30)
    image = _frame([hand], rng)
    drawn = np.zeros((H, W), np.uint8)
    drawn[_disc(87, 64, 30)] = MASK_LEFT
    refined = refine_hand_masks(image, drawn, MaskRefinement(work_radius=12.0))  # GrabCut at 0.4x
    assert _iou(drawn == MASK_LEFT, hand) < 0.75
    assert _iou(refined == MASK_LEFT, hand) > 0.9


def test_touching_hands_share_no_pixel_and_keep_their_drawn_cores():
    rng = np.random.default_rng(4)
    left, right = _disc(65, 60, 18), _disc(98, 60, 18)  # 3 px apart in the frame
    image = _frame([left, right], rng)
    drawn = np.zeros((H, W), np.uint8)
    drawn[_disc(69, 62, 18)] = MASK_LEFT  # drawn overlapping: the left hand's drawn disc wins there
    drawn[_disc(96, 58, 18) & (drawn == 0)] = MASK_RIGHT
    refined = refine_hand_masks(image, drawn)
    assert _iou(refined == MASK_LEFT, left) > 0.85 and _iou(refined == MASK_RIGHT, right) > 0.85
    for hand, centre in ((MASK_LEFT, (69, 62)), (MASK_RIGHT, (96, 58))):
        core = _disc(*centre, 18 - 6) & (drawn == hand)  # the drawn hand eroded by 0.3 of its radius
        assert (refined[core] == hand).all()


def test_a_tiny_hand_stays_while_the_other_moves():
    rng = np.random.default_rng(5)
    right = _disc(110, 60, 20)
    image = _frame([right], rng)
    drawn = np.zeros((H, W), np.uint8)
    drawn[10:13, 10:14] = MASK_LEFT  # 12 pixels: too few colours to model
    drawn[_disc(104, 64, 20)] = MASK_RIGHT
    refined = refine_hand_masks(image, drawn)
    np.testing.assert_array_equal(refined == MASK_LEFT, drawn == MASK_LEFT)
    assert _iou(drawn == MASK_RIGHT, right) < 0.75 and _iou(refined == MASK_RIGHT, right) > 0.9
