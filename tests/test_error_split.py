"""scripts/error_split.py and the evaluation images it reads: occluder pixels count as the metrics count them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import torch

from hand4dgs_ns.model.hand4dgs import Hand4DGSModel

SCRIPT = Path(__file__).parents[1] / "scripts" / "error_split.py"


def test_evaluation_images_carry_the_occluder_pixels():
    labels = torch.zeros(6, 8, dtype=torch.uint8)
    labels[1:4, 1:4] = 2  # a right hand
    labels[4:, 1:4] = 3  # a forearm in front below it
    batch = {
        "image": torch.rand(6, 8, 3), "hand_mask": labels,
        "bbox_image": torch.tensor([[[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 4.0, 4.0]]]), "valid": torch.tensor([[False, True]]),
    }
    outputs = {"rgb": torch.rand(6, 8, 3), "accumulation": torch.rand(6, 8, 1)}
    model = SimpleNamespace(device="cpu", config=SimpleNamespace(eval_background="black"))
    _, images = Hand4DGSModel.get_image_metrics_and_images(model, outputs, batch)
    assert images["img"].shape == (6, 16, 3)
    torch.testing.assert_close(images["occluders"][..., 0], (labels == 3).float())


def _output(folder: Path) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, check=True).stdout


def _error_split(folder: Path) -> dict[str, float]:
    out = _output(folder)
    numbers = re.search(
        r"off-hand share ([\d.]+)\); drawn off-hand pixels per hand pixel ([\d.]+), hand pixels left undrawn per hand pixel "
        r"([\d.]+); drawn under occluders \(not scored\) per hand pixel ([\d.]+)", out,
    )
    assert numbers, out
    return dict(zip(("share", "drawn_off", "missed", "drawn_occluded"), map(float, numbers.groups())))


def test_pixels_drawn_under_occluders_are_counted_apart(tmp_path):
    target = np.zeros((4, 4, 3), np.uint8)
    target[:2, :2] = 200  # four hand pixels
    render = target.copy()
    render[2, 0] = 200  # drawn off the hand on background
    render[3, 3] = 200  # drawn off the hand under an occluder
    iio.imwrite(tmp_path / "eval_img_0000.png", np.concatenate([target, render], axis=1))
    assert _error_split(tmp_path) == {"share": 1.0, "drawn_off": 0.5, "missed": 0.0, "drawn_occluded": 0.0}
    occluders = np.zeros((4, 4), np.uint8)
    occluders[3, 3] = 255
    iio.imwrite(tmp_path / "eval_occluders_0000.png", occluders)
    assert _error_split(tmp_path) == {"share": 1.0, "drawn_off": 0.25, "missed": 0.0, "drawn_occluded": 0.25}


def test_the_drawn_hands_offset_from_the_frames_is_reported(tmp_path):
    """Hands drawn two pixels right of the frame's in one image and one pixel down in another:
    the mean offset and its spread over the two."""
    for i, (dx, dy) in enumerate([(2, 0), (0, 1)]):
        target = np.zeros((12, 12, 3), np.uint8)
        target[3:7, 3:7] = 200
        render = np.zeros_like(target)
        render[3 + dy : 7 + dy, 3 + dx : 7 + dx] = 200
        iio.imwrite(tmp_path / f"eval_img_{i:04d}.png", np.concatenate([target, render], axis=1))
    out = _output(tmp_path)
    assert "over 2 images: mean +1.00, +0.50; spread 1.00, 0.50" in out, out
