"""A copy of a sequence folder whose hand masks are drawn from its pseudo-label meshes.

A synthetic clip's masks are the true hands' outlines; on real footage they come from the hand
estimator's meshes (HaMeR's, as the H2O and ARCTIC readers and the paper draw them), which sit where the
pseudo-labels put the hands. Training on such a copy measures what the image losses do with
masks as good as the labels, not better. The original's occluder pixels (label 3) stay occluders
(the objects of H2O and ARCTIC are known there too). The static views (views/) are not copied.
With --refine, each drawn hand is then moved onto the frame's own hand as the H2O and ARCTIC
readers do by default (hand4dgs_ns.datasets.mask_refine).

    python scripts/pseudo_label_masks.py SRC DST [--refine] [--overwrite]

Needs pseudo_verts in the open hand template's topology (hand4dgs synth writes them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER, SequenceWriter, read_rgb, read_sequence
from hand4dgs_ns.datasets.hamer import drawn_masks
from hand4dgs_ns.datasets.mask_refine import MaskRefinement, refine_hand_masks
from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.hands import load_template
from hand4dgs_ns.progress import progress_bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--refine", action="store_true", help="move the drawn hands onto the frames' hands")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    try:
        write_copy(args.src, args.dst, args.overwrite, MaskRefinement() if args.refine else None)
    except Hand4DGSError as err:
        raise SystemExit(str(err)) from None


def write_copy(src: Path, dst: Path, overwrite: bool, refinement: MaskRefinement | None = None) -> None:
    seq = read_sequence(src)
    hands, cams = seq.hands, seq.cameras
    templates = [load_template("open", side) for side in ("left", "right")]
    faces = [template.faces for template in templates]
    if hands.pseudo_verts is None or hands.pseudo_verts.shape[-2] != templates[0].num_vertices:
        raise file_error(src / "hands.npz", "has no pseudo_verts in the open hand template's topology", "use a clip from hand4dgs synth")
    if seq.mask_paths is None:
        raise file_error(src / "masks", "does not exist", "use a clip with hand masks (its occluders are kept)")
    verts_world = torch.from_numpy(np.asarray(hands.pseudo_verts, np.float64))
    drawn = drawn_masks(verts_world, hands.valid, cams, faces)
    with SequenceWriter(dst, overwrite=overwrite) as writer, progress_bar() as progress:
        for i, labels in progress.track(enumerate(drawn), total=seq.num_frames, description=f"masks of {seq.name}"):
            original = np.asarray(Image.open(seq.mask_paths[i]))
            labels[original == MASK_OCCLUDER] = MASK_OCCLUDER
            image = read_rgb(seq.image_paths[i])
            if refinement is not None:
                labels = refine_hand_masks(image, labels, refinement)
            writer.add_frame(image, labels)
        writer.finish(cams, hands)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
