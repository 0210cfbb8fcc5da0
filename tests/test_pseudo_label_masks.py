"""scripts/pseudo_label_masks.py: a clip's masks redrawn from its pseudo-label meshes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hand4dgs_ns.data.sequence_format import hand_pixels, occluder_pixels, read_sequence
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.synthetic import SynthConfig, synthesize_clip

SCRIPT = Path(__file__).parents[1] / "scripts" / "pseudo_label_masks.py"


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def _labels(seq, i: int) -> np.ndarray:
    return np.asarray(Image.open(seq.mask_paths[i]))


def test_masks_follow_the_pseudo_labels_and_keep_the_occluders(tmp_path):
    clip = tmp_path / "clip"
    synthesize_clip(clip, SynthConfig(num_frames=3, width=96, height=72, static_views=False), progress=False)
    assert _run(clip, tmp_path / "pm").returncode == 0
    original, pm = read_sequence(clip), read_sequence(tmp_path / "pm")
    np.testing.assert_array_equal(pm.hands.pseudo_verts, original.hands.pseudo_verts)
    w2c = invert_rigid(torch.from_numpy(original.cameras.c2w))
    for i in range(3):
        before, after = _labels(original, i), _labels(pm, i)
        assert (occluder_pixels(after) >= occluder_pixels(before)).all()  # occluders kept
        assert hand_pixels(after).any() and (hand_pixels(after) != hand_pixels(before)).any()  # redrawn, not copied
        # Each drawn hand lies where its pseudo-label vertices project (their box, a pixel's slack).
        for slot, label in ((0, 1), (1, 2)):
            if not original.hands.valid[i, slot] or not (after == label).any():
                continue
            cam = transform_points(w2c[i], torch.from_numpy(original.hands.pseudo_verts[i, slot]))
            uv = project_points(torch.from_numpy(original.cameras.K[i]), cam).numpy()
            ys, xs = np.nonzero(after == label)
            assert xs.min() >= uv[:, 0].min() - 1.5 and xs.max() <= uv[:, 0].max() + 0.5
            assert ys.min() >= uv[:, 1].min() - 1.5 and ys.max() <= uv[:, 1].max() + 0.5


def test_a_folder_that_is_not_a_clip_ends_with_one_sentence(tmp_path):
    result = _run(tmp_path / "missing", tmp_path / "out")
    assert result.returncode != 0 and "missing" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_refined_copy_is_nearer_the_true_hands(tmp_path):
    """--refine moves the drawn hands onto the frames' hands: closer to the clip's true outlines."""
    clip = tmp_path / "clip"
    synthesize_clip(clip, SynthConfig(num_frames=4, width=192, height=144, static_views=False), progress=False)
    assert _run(clip, tmp_path / "drawn").returncode == 0
    assert _run(clip, tmp_path / "refined", "--refine").returncode == 0
    true, drawn, refined = (read_sequence(p) for p in (clip, tmp_path / "drawn", tmp_path / "refined"))

    def iou(seq) -> float:
        scores = []
        for i in range(4):
            for label in (1, 2):
                a, b = _labels(seq, i) == label, _labels(true, i) == label
                if (a | b).any():
                    scores.append((a & b).sum() / (a | b).sum())
        return float(np.mean(scores))

    assert iou(refined) > iou(drawn) + 0.05
