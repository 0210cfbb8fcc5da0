"""Where a run's image error lies: on the hands, or where it draws a hand the frame does not show.

Reads the evaluation images `ns-eval --render-output-path DIR` writes (target | render, side by
side; the target is the frame's hands on black, so a black target pixel is off the hands) and
splits the squared error into pixels of the frame's hands and pixels off them. A large off-hand
share means the drawn silhouette, not the colours, costs the PSNR; drawn off-hand pixels much
above the undrawn hand pixels mean hands drawn too large, the two alike mean hands misplaced.
Pixels an occluder covers (the eval_occluders_*.png beside each image: forearms, sleeves, held
objects) add no error, as in the crop metrics, and count neither as hand nor as off-hand pixels;
what is drawn there is counted apart.
It also gives where the drawn hands sit against the frame's: the offset of the drawn pixels'
centroid from the hand pixels' (occluders left out), in pixels of the evaluation images, its mean
over the images and its spread. A mean as large as the spread is a shift in one direction, frame
after frame; a mean near zero with a large spread is a placement error without a direction.
With --picture, also writes one frame's map: the hands' own pixels dimmed, drawn off-hand pixels
red, missed hand pixels blue, occluder pixels grey.

    python scripts/error_split.py DIR [--picture map.png [--frame eval_img_0010.png]]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple, Optional

import imageio.v3 as iio
import numpy as np

DRAWN = 0.15  # a rendered pixel whose RGB sum is above this counts as drawn


def split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target, render (float RGB in [0, 1]) and the off-hand mask of one side-by-side image."""
    image = image[..., :3].astype(np.float64) / 255.0
    w = image.shape[1] // 2
    target, render = image[:, :w], image[:, w : 2 * w]
    return target, render, target.sum(-1) == 0


def occluders(image_file: Path, shape: tuple[int, int]) -> np.ndarray:
    """The occluder pixels of one evaluation image (none when its eval_occluders_*.png is absent:
    renders of runs from before it was written)."""
    path = image_file.with_name(image_file.name.replace("eval_img_", "eval_occluders_"))
    if not path.is_file():
        return np.zeros(shape, dtype=bool)
    mask = iio.imread(path)
    return (mask if mask.ndim == 2 else mask[..., 0]) > 127


class EvalImage(NamedTuple):
    """One evaluation image: target and render (float RGB in [0, 1]) and its pixel masks. The hand,
    off-hand and occluder masks do not overlap; ``drawn`` is where the render shows a hand."""

    target: np.ndarray
    render: np.ndarray
    on_hand: np.ndarray
    off_hand: np.ndarray
    occluded: np.ndarray
    drawn: np.ndarray


def read(image_file: Path) -> EvalImage:
    """The target, render and pixel masks of one evaluation image."""
    target, render, off_hand = split(iio.imread(image_file))
    occluded = occluders(image_file, off_hand.shape)
    return EvalImage(target, render, ~off_hand & ~occluded, off_hand & ~occluded, occluded, render.sum(-1) > DRAWN)


def silhouette_offset(drawn: np.ndarray, hand: np.ndarray) -> Optional[np.ndarray]:
    """(x, y) of the drawn pixels' centroid minus the hand pixels' (x right, y down), or None when
    either set is empty."""
    if not drawn.any() or not hand.any():
        return None
    return _centroid_xy(drawn) - _centroid_xy(hand)


def _centroid_xy(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)[::-1]  # (row, column) -> (x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renders", type=Path)
    parser.add_argument("--picture", type=Path, default=None)
    parser.add_argument("--frame", default=None, help="which image the picture shows (default: the middle one)")
    args = parser.parse_args()
    files = sorted(args.renders.glob("eval_img_*.png"))
    if not files:
        raise SystemExit(f"{args.renders} holds no eval_img_*.png: pass the folder given to ns-eval --render-output-path.")
    on = off = 0.0
    drawn_off = drawn_occluded = missed = hand = 0
    offsets = []
    for f in files:
        target, render, on_hand, off_hand, occluded, drawn = read(f)
        err = ((target - render) ** 2).sum(-1)
        on, off = on + err[on_hand].sum(), off + err[off_hand].sum()
        drawn_off += int((off_hand & drawn).sum())
        drawn_occluded += int((occluded & drawn).sum())
        missed += int((on_hand & ~drawn).sum())
        hand += int(on_hand.sum())
        offset = silhouette_offset(drawn & ~occluded, on_hand)
        if offset is not None:
            offsets.append(offset)
    print(f"{len(files)} images: squared error on the hands {on:.0f}, off them {off:.0f} "
          f"(off-hand share {off / max(on + off, 1e-12):.2f}); drawn off-hand pixels per hand pixel {drawn_off / max(hand, 1):.2f}, "
          f"hand pixels left undrawn per hand pixel {missed / max(hand, 1):.2f}; "
          f"drawn under occluders (not scored) per hand pixel {drawn_occluded / max(hand, 1):.2f}")
    if offsets:
        mean, spread = np.mean(offsets, axis=0), np.std(offsets, axis=0)
        print(f"drawn hands' centroid minus the frame's (px, x right, y down), over {len(offsets)} images: "
              f"mean {mean[0]:+.2f}, {mean[1]:+.2f}; spread {spread[0]:.2f}, {spread[1]:.2f}")
    if args.picture is not None:
        frame = args.renders / args.frame if args.frame else files[len(files) // 2]
        if not frame.is_file():
            raise SystemExit(f"{frame} does not exist: pass --frame one of the eval_img_*.png files of {args.renders}.")
        target, render, on_hand, off_hand, occluded, drawn = read(frame)
        out = np.where(on_hand[..., None], target * 0.6, 0.0)
        out[occluded] = (0.3, 0.3, 0.3)
        out[off_hand & drawn] = (1.0, 0.0, 0.0)
        out[on_hand & ~drawn] = (0.0, 0.4, 1.0)
        ys, xs = np.nonzero(on_hand | drawn)
        if len(ys):
            y0, y1, x0, x1 = max(ys.min() - 5, 0), ys.max() + 6, max(xs.min() - 5, 0), xs.max() + 6
            panels = [p[y0:y1, x0:x1] for p in (target, render, out)]
            out = np.concatenate(panels, axis=1).repeat(4, 0).repeat(4, 1)
        iio.imwrite(args.picture, (out * 255).round().astype(np.uint8))
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
