"""Tests of the synthetic benchmark set: folders, split file, distinct videos, reproducibility, workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hand4dgs_ns.data.sequence_format import read_sequence
from hand4dgs_ns.dataparsers.splits import SPLIT_FILE
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.synthetic.clip import SynthConfig, build_scene
from hand4dgs_ns.synthetic.clip_set import synthesize_clip_set, video_seed

BIN = Path(sys.executable).parent
TINY = SynthConfig(num_frames=3, width=64, height=48, supersample=1, static_views=False, seed=7)
TINY_FLAGS = "--frames 3 --width 64 --height 48 --supersample 1 --no-static-views --seed 7".split()
NAMES = ["test_000", "train_000", "train_001"]
# OpenPose joints: wrist, then four per finger from its base; each bone ends at a joint the hand
# model regresses from the shaped rest mesh (fingertips are mesh vertices and bend with the pose).
BONES = [(0 if j % 4 == 1 else j - 1, j) for j in range(1, 21) if j % 4 != 0]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    command = [str(BIN / "hand4dgs"), "synth-set", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("set") / "tiny"
    return synthesize_clip_set(out, num_train=2, num_test=1, config=TINY, progress=False)


def test_set_holds_the_videos_and_the_split_file(tiny_set) -> None:
    root = tiny_set.root
    assert sorted(p.name for p in root.iterdir()) == sorted([*NAMES, SPLIT_FILE])  # no temporary files left
    splits = json.loads((root / SPLIT_FILE).read_text())
    assert splits == {"train": ["train_000", "train_001"], "test": ["test_000"]} == tiny_set.splits
    for name in NAMES:
        seq = read_sequence(root / name, check_frames=True)
        assert seq.num_frames == 3 and (seq.cameras.width, seq.cameras.height) == (64, 48) and seq.views == {}
    assert tiny_set.num_frames == 9 and list(tiny_set.clips) == ["train_000", "train_001", "test_000"]


def test_every_video_has_its_own_subject_motion_and_head_path(tiny_set) -> None:
    root, seeds = tiny_set.root, tiny_set.seeds
    assert len(set(seeds.values())) == 3 and TINY.seed not in seeds.values()
    seqs = {name: read_sequence(root / name) for name in NAMES}
    parent, child = np.array(BONES).T
    joints = {name: seq.hands.gt_joints for name, seq in seqs.items()}
    bones = {name: np.linalg.norm(j[:, :, child] - j[:, :, parent], axis=-1) for name, j in joints.items()}
    for name in NAMES:  # (F, 2, 15): the same over frames, whatever the pose
        np.testing.assert_allclose(bones[name], bones[name][:1].repeat(3, axis=0), atol=1e-5)
    for a, b in [("train_000", "train_001"), ("train_000", "test_000"), ("train_001", "test_000")]:
        assert (root / a / "rgb" / "000000.png").read_bytes() != (root / b / "rgb" / "000000.png").read_bytes()
        assert not np.allclose(seqs[a].cameras.c2w, seqs[b].cameras.c2w)  # head path
        assert not np.allclose(seqs[a].hands.gt_joints, seqs[b].hands.gt_joints)  # motion
        assert np.abs(bones[a] - bones[b]).max() > 1e-3  # hand shape
    # The files are those of each video's own seed, whose skin, room and lighting differ.
    scenes = [build_scene(replace(TINY, seed=seeds[name])) for name in NAMES]
    for name, scene in zip(NAMES, scenes):
        np.testing.assert_allclose(seqs[name].hands.gt_joints, scene.gt_joints.numpy(), atol=1e-6)
    hand_vertices = sum(t.num_vertices for t in scenes[0].templates)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not torch.allclose(scenes[a].mesh.albedo[:hand_vertices], scenes[b].mesh.albedo[:hand_vertices])
        assert not np.allclose(scenes[a].room.bounds, scenes[b].room.bounds)
        assert scenes[a].lighting.ambient != scenes[b].lighting.ambient


def test_video_seeds_depend_on_the_set_seed_split_and_index_only() -> None:
    assert video_seed(7, "train", 0) == video_seed(7, "train", 0)
    seeds = {video_seed(7, "train", 0), video_seed(7, "test", 0), video_seed(8, "train", 0), video_seed(7, "train", 1)}
    assert len(seeds) == 4


def test_cli_writes_the_same_files_as_the_function(tiny_set, tmp_path) -> None:
    out = tmp_path / "cli"
    run = _cli([str(out), "--train", "2", "--test", "1", *TINY_FLAGS], tmp_path)
    assert run.returncode == 0, run.stderr
    assert _files(out) == _files(tiny_set.root)
    assert "Wrote 3 videos" in run.stdout and f"ns-train hand4dgs-generalized --data {out}" in run.stdout


def test_cli_refuses_an_existing_folder_without_overwrite(tmp_path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    run = _cli([str(out), "--train", "1", "--test", "1", *TINY_FLAGS], tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(out) in last and "--overwrite" in last
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_overwrite_replaces_the_videos_but_no_other_folder(tiny_set, tmp_path) -> None:
    out = tmp_path / "again"
    synthesize_clip_set(out, 2, 1, replace(TINY, seed=8), progress=False)
    result = synthesize_clip_set(out, 2, 1, TINY, overwrite=True, progress=False)
    assert _files(result.root) == _files(tiny_set.root)
    (out / "test_000" / "rgb").rename(out / "test_000" / "mine")  # no longer a sequence folder
    (out / "test_000" / "cameras.npz").unlink()
    (out / "test_000" / "hands.npz").unlink()
    with pytest.raises(Hand4DGSError, match="test_000"):
        synthesize_clip_set(out, 2, 1, TINY, overwrite=True, progress=False)
    assert (out / SPLIT_FILE).exists()  # refused before anything changed


def test_bad_counts_raise_user_errors_and_write_nothing(tmp_path) -> None:
    for train, test, workers in [(0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        with pytest.raises(Hand4DGSError):
            synthesize_clip_set(tmp_path / "bad", train, test, TINY, workers=workers, progress=False)
    assert not (tmp_path / "bad").exists()


def test_two_workers_write_the_same_files_as_one(tiny_set, tmp_path) -> None:
    result = synthesize_clip_set(tmp_path / "workers", 2, 1, TINY, workers=2, progress=False)
    assert _files(result.root) == _files(tiny_set.root)


def test_test_videos_may_be_longer_than_the_training_ones(tiny_set, tmp_path) -> None:
    out = tmp_path / "long_test"
    run = _cli([str(out), "--train", "2", "--test", "1", *TINY_FLAGS, "--test-frames", "5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_sequence(out / "test_000", check_frames=True).num_frames == 5
    for name in ("train_000", "train_001"):  # the training videos are those of the set without the flag
        assert _files(out / name) == _files(tiny_set.root / name)
    assert "11 frames in all" in run.stdout
    # ... and the test video is the one a set of 5-frame videos holds.
    five = synthesize_clip_set(tmp_path / "five", 1, 1, replace(TINY, num_frames=5), progress=False)
    assert _files(out / "test_000") == _files(five.root / "test_000")
    with pytest.raises(Hand4DGSError, match="--test-frames 1"):
        synthesize_clip_set(tmp_path / "bad", 1, 1, TINY, test_frames=1, progress=False)
    assert not (tmp_path / "bad").exists()
