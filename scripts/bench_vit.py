"""Throughput of HaMeR's ViT-H feature extraction (bf16 autocast on CUDA), in crops per second.

Builds the full ViT-H with random weights directly on the device (or loads ``--checkpoint``),
then times, per batch size: the backbone alone on ready crops, and cropping both hands from
720p frames on the device (decoding is not timed). Prints a table and one JSON line.

    python scripts/bench_vit.py --num-crops 2048 --batch-sizes 32 64 128
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import tyro

from hand4dgs_ns.features.backbones import HAMER_VIT_H, HamerViT
from hand4dgs_ns.features.crops import crop_hands_per_image, crop_params


@dataclass
class Args:
    num_crops: int = 2048
    """Crops timed per batch size."""
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    """Batch sizes to time."""
    checkpoint: Path | None = None
    """HaMeR checkpoint; random weights when left out."""
    device: str = "cuda"
    """Where to run (bf16 autocast applies on CUDA only)."""
    bf16: bool = True
    """Use bf16 autocast on CUDA."""
    warmup: int = 3
    """Untimed batches before each measurement."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, batches: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    _sync(device)
    return time.perf_counter() - start


def main(args: Args) -> None:
    device = torch.device(args.device)
    start = time.perf_counter()
    if args.checkpoint is not None:
        model = HamerViT.from_checkpoint(args.checkpoint, bf16=args.bf16).to(device)
    else:
        with torch.device(device):  # random init straight on the device: no 2.5 GB CPU copy
            model = HamerViT(HAMER_VIT_H, bf16=args.bf16)
    _sync(device)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"ViT-H: {params / 1e6:.1f} M parameters, built in {build_s:.1f} s on {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, bf16={args.bf16}")

    gen = torch.Generator(device=device).manual_seed(0)
    results = []
    for batch in args.batch_sizes:
        batches = max(1, args.num_crops // batch)
        crops = torch.randn(batch, 3, *model.input_hw, device=device, generator=gen)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        vit_s = _time(partial(model, crops), batches, args.warmup, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

        frames = torch.randint(0, 256, (batch // 2, 720, 1280, 3), dtype=torch.uint8, device=device, generator=gen)
        two_boxes = [[400.0, 300.0, 560.0, 460.0], [700.0, 280.0, 880.0, 470.0]]
        boxes = torch.tensor(two_boxes, device=device).expand(batch // 2, 2, 4)
        centre, size = crop_params(boxes)
        flip = torch.tensor([True, False], device=device).expand(batch // 2, 2)
        crop_s = _time(partial(crop_hands_per_image, frames, centre, size, flip, model.input_hw), batches, args.warmup, device)
        n = batches * batch
        row = {"batch": batch, "crops": n, "vit_crops_per_s": n / vit_s, "crop_crops_per_s": n / crop_s,
               "end_to_end_crops_per_s": n / (vit_s + crop_s), "peak_gib": peak}
        results.append(row)
        memory = f" | peak {peak:.1f} GiB" if peak is not None else ""
        print(f"batch {batch:4d}: ViT {row['vit_crops_per_s']:8.1f} crops/s | cropping {row['crop_crops_per_s']:9.1f}"
              f" crops/s | both {row['end_to_end_crops_per_s']:8.1f} crops/s{memory}")
    print(json.dumps({"device": str(device), "bf16": args.bf16, "params": params, "results": results}))


if __name__ == "__main__":
    main(tyro.cli(Args))
