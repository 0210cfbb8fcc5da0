"""How much of a run's image error is colour, and how much is where the hands are drawn.

For every held-out frame of a trained run, the one RGB gain that best matches the rendered hand
pixels to the frame's (least squares over the mask's hand pixels) is applied to the render, and
the square-crop PSNR is measured before and after. If a per-frame gain (exposure, light level)
were what the model misses, the PSNR would rise a lot; if it barely moves, the error is in the
geometry. It also writes ``crops.png``: frame | render, square crops of every sixth held-out frame.

    python scripts/best_gain_check.py --load-config <run>/config.yml --out /tmp/check
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
import tyro
from nerfstudio.utils.eval_utils import eval_setup

from hand4dgs_ns.data.sequence_format import hand_pixels
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.eval.metrics import hand_crop_metrics, hand_target, square_boxes


@dataclass
class BestGainCheck:
    load_config: Path
    """A trained run's config.yml."""
    out: Path
    """Folder for results.json and crops.png."""
    every: int = 6
    """Every how many held-out frames a crop goes into the picture."""
    zoom: int = 3
    """Pixel repeat of the picture."""

    def main(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        background = 0.0 if pipeline.model.config.eval_background == "black" else 1.0
        before, after, log_gains, tiles = [], [], [], []
        for i, (camera, batch) in enumerate(pipeline.datamanager.eval_frames()):
            with torch.no_grad():
                rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"]
            image = batch["image"].reshape(-1, *batch["image"].shape[-3:])[0].to(rgb)
            labels = batch["hand_mask"].reshape(-1, *batch["hand_mask"].shape[-2:])[0].to(rgb.device)
            boxes = square_boxes(batch["bbox_image"].reshape(-1, 2, 4)[0][batch["valid"].reshape(-1, 2)[0]])
            hand = hand_pixels(labels)
            if not hand.any() or len(boxes) == 0:
                continue
            gain = (rgb[hand] * image[hand]).sum(0) / (rgb[hand] ** 2).sum(0).clamp(min=1e-8)
            psnr0, _ = hand_crop_metrics(rgb, image, labels, boxes, background)
            psnr1, _ = hand_crop_metrics(rgb * gain, image, labels, boxes, background)
            before.append(sum(psnr0) / len(psnr0))
            after.append(sum(psnr1) / len(psnr1))
            log_gains.append(float(gain.mean().log()))
            if i % self.every == 0:
                x0, y0, x1, y1 = boxes[0].round().long().tolist()
                crop = (slice(max(y0, 0), max(y1, 0)), slice(max(x0, 0), max(x1, 0)))
                tiles.append(torch.cat([hand_target(image, labels, background)[crop], rgb.clamp(0, 1)[crop]], dim=1).cpu())
        if not before:
            raise Hand4DGSError(f"No held-out frame of {self.load_config} shows a hand; nothing to check.")
        results = {
            "frames": len(before),
            "psnr_square": float(np.mean(before)),
            "psnr_square_best_gain": float(np.mean(after)),
            "best_gain_range": [math.exp(min(log_gains)), math.exp(max(log_gains))],
            "best_log_gain_std": float(np.std(log_gains)),
        }
        (self.out / "results.json").write_text(json.dumps(results, indent=2))
        if tiles:
            self._write_picture(tiles)
        print(json.dumps(results, indent=2))

    def _write_picture(self, tiles: list[torch.Tensor]) -> None:
        h = max(t.shape[0] for t in tiles)
        w = max(t.shape[1] for t in tiles)
        padded = [F.pad(t.permute(2, 0, 1), (0, w - t.shape[1], 0, h - t.shape[0])).permute(1, 2, 0) for t in tiles]
        picture = (torch.cat(padded, dim=0).numpy() * 255).round().astype(np.uint8)
        iio.imwrite(self.out / "crops.png", picture.repeat(self.zoom, 0).repeat(self.zoom, 1))


if __name__ == "__main__":
    tyro.cli(BestGainCheck).main()
