"""Sequence format v1: writer/reader round trip, atomic writes, and one clear error per broken layout."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hand4dgs_ns.data.sequence_format import (
    SequenceCameras,
    SequenceHands,
    SequenceWriter,
    find_sequences,
    is_sequence_folder,
    read_sequence,
)
from hand4dgs_ns.errors import Hand4DGSError

F, H, W, V = 4, 12, 16, 7


def _arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    K = np.stack([[[20.0 + i, 0, 8.0], [0, 21.0 + i, 6.0], [0, 0, 1.0]] for i in range(F)])
    c2w = np.tile(np.eye(4), (F, 1, 1))
    c2w[:, :3, 3] = rng.normal(size=(F, 3))
    cameras = SequenceCameras(K=K, c2w=c2w, fps=25.0, width=W, height=H)
    valid = rng.random((F, 2)) > 0.3
    xs, ys = np.sort(rng.uniform(0, W, size=(F, 2, 2)), axis=-1), np.sort(rng.uniform(0, H, size=(F, 2, 2)), axis=-1)
    hands = SequenceHands(
        bbox=np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], axis=-1),
        valid=valid,
        pseudo_joints=rng.normal(size=(F, 2, 21, 3)),
        pseudo_verts=rng.normal(size=(F, 2, V, 3)),
        gt_joints=rng.normal(size=(F, 2, 21, 3)),
        gt_valid=~valid,
    )
    rgb = rng.integers(0, 256, size=(F, H, W, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, size=(F, H, W), dtype=np.uint8)
    view_rgb = rng.integers(0, 256, size=(F, H + 2, W + 4, 3), dtype=np.uint8)
    view_cameras = SequenceCameras(
        K=cameras.K.copy(), c2w=np.tile(np.eye(4), (F, 1, 1)), fps=25.0, width=W + 4, height=H + 2
    )
    return cameras, hands, rgb, masks, view_rgb, view_cameras


def _write(out: Path, **kwargs) -> tuple:
    cameras, hands, rgb, masks, view_rgb, view_cameras = data = _arrays()
    with SequenceWriter(out, **kwargs) as writer:
        for f in range(F):
            writer.add_frame(rgb[f], masks[f])
            writer.add_view_frame("cam0", view_rgb[f])
        writer.finish(cameras, hands, {"cam0": view_cameras})
    return data


def test_round_trip_keeps_every_key_dtype_and_shape(tmp_path):
    out = tmp_path / "seq"
    cameras, hands, rgb, masks, view_rgb, view_cameras = _write(out)

    with np.load(out / "cameras.npz") as raw:
        assert sorted(raw.files) == ["K", "c2w", "fps"]
        assert (raw["K"].dtype, raw["K"].shape) == (np.float32, (F, 3, 3))
        assert (raw["c2w"].dtype, raw["c2w"].shape) == (np.float32, (F, 4, 4))
        assert (raw["fps"].dtype, raw["fps"].shape) == (np.float32, ())
    with np.load(out / "hands.npz") as raw:
        assert sorted(raw.files) == ["bbox", "gt_joints", "gt_valid", "pseudo_joints", "pseudo_verts", "valid"]
        expected = {
            "bbox": (F, 2, 4),
            "pseudo_joints": (F, 2, 21, 3),
            "pseudo_verts": (F, 2, V, 3),
            "gt_joints": (F, 2, 21, 3),
        }
        for key, shape in expected.items():
            assert (raw[key].dtype, raw[key].shape) == (np.float32, shape), key
        assert (raw["valid"].dtype, raw["valid"].shape) == (np.bool_, (F, 2))
        assert (raw["gt_valid"].dtype, raw["gt_valid"].shape) == (np.bool_, (F, 2))

    sequence = read_sequence(out, check_frames=True)
    assert sequence.name == "seq" and sequence.root == out and sequence.num_frames == F
    assert [p.name for p in sequence.image_paths] == [f"{i:06d}.png" for i in range(F)]
    assert [p.name for p in sequence.mask_paths] == [f"{i:06d}.png" for i in range(F)]
    for f in range(F):
        np.testing.assert_array_equal(np.asarray(Image.open(sequence.image_paths[f])), rgb[f])
        mask = np.asarray(Image.open(sequence.mask_paths[f]))
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, masks[f])

    assert (sequence.cameras.width, sequence.cameras.height, sequence.cameras.fps) == (W, H, 25.0)
    np.testing.assert_allclose(sequence.cameras.K, cameras.K, rtol=1e-6)
    np.testing.assert_allclose(sequence.cameras.c2w, cameras.c2w, rtol=1e-6, atol=1e-6)
    for key in ("bbox", "pseudo_joints", "pseudo_verts", "gt_joints"):
        value = getattr(sequence.hands, key)
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, getattr(hands, key), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sequence.hands.valid, hands.valid)
    np.testing.assert_array_equal(sequence.hands.gt_valid, hands.gt_valid)

    view = sequence.views["cam0"]
    assert list(sequence.views) == ["cam0"] and view.name == "cam0"
    assert (view.cameras.width, view.cameras.height) == (W + 4, H + 2)
    np.testing.assert_array_equal(np.asarray(Image.open(view.image_paths[2])), view_rgb[2])
    np.testing.assert_allclose(view.cameras.c2w, view_cameras.c2w)


def test_single_K_is_broadcast_and_fps_defaults_to_30(tiny_sequence):
    with np.load(tiny_sequence / "cameras.npz") as raw:
        K, c2w = raw["K"][0], raw["c2w"]
    np.savez(tiny_sequence / "cameras.npz", K=K, c2w=c2w)
    sequence = read_sequence(tiny_sequence)
    assert sequence.cameras.K.shape == (6, 3, 3)
    np.testing.assert_array_equal(sequence.cameras.K[5], K)
    assert sequence.cameras.fps == 30.0
    assert (sequence.cameras.width, sequence.cameras.height) == (64, 48)


def test_optional_entries_may_be_absent(make_sequence):
    sequence = read_sequence(make_sequence(masks=False, pseudo_verts=None, ground_truth=False))
    assert sequence.mask_paths is None and sequence.views == {}
    assert sequence.hands.pseudo_verts is None and sequence.hands.gt_joints is None and sequence.hands.gt_valid is None


def test_gt_valid_defaults_to_every_hand(tiny_sequence):
    with np.load(tiny_sequence / "hands.npz") as raw:
        arrays = {key: raw[key] for key in raw.files if key != "gt_valid"}
    np.savez(tiny_sequence / "hands.npz", **arrays)
    assert read_sequence(tiny_sequence).hands.gt_valid.all()


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exception_inside_writer_leaves_nothing(tmp_path):
    out = tmp_path / "seq"
    with pytest.raises(KeyError):
        with SequenceWriter(out) as writer:
            writer.add_frame(np.zeros((H, W, 3), np.uint8))
            raise KeyError("converter failed")
    assert _no_leftovers(tmp_path) == []


def test_failed_finish_leaves_nothing_and_names_the_file(tmp_path):
    cameras, hands, rgb, *_ = _arrays()
    short_hands = SequenceHands(bbox=hands.bbox[:2], valid=hands.valid, pseudo_joints=hands.pseudo_joints)
    with pytest.raises(Hand4DGSError, match=r"seq/hands\.npz: 'bbox' has 2 frames but rgb/ holds 4"):
        with SequenceWriter(tmp_path / "seq") as writer:
            for f in range(F):
                writer.add_frame(rgb[f])
            writer.finish(cameras, short_hands)
    assert _no_leftovers(tmp_path) == []


def test_closing_without_finish_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="without finish"):
        with SequenceWriter(tmp_path / "seq") as writer:
            writer.add_frame(np.zeros((H, W, 3), np.uint8))
    assert _no_leftovers(tmp_path) == []


def test_writer_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "seq"
    _write(out)
    with pytest.raises(Hand4DGSError, match="already exists"):
        SequenceWriter(out)
    with SequenceWriter(out, overwrite=True) as writer:
        writer.add_frame(np.full((H, W, 3), 7, np.uint8))
        cameras, hands, *_ = _arrays()
        writer.finish(
            SequenceCameras(K=cameras.K[:1], c2w=cameras.c2w[:1], fps=30.0, width=W, height=H),
            SequenceHands(bbox=hands.bbox[:1], valid=hands.valid[:1], pseudo_joints=hands.pseudo_joints[:1]),
        )
    sequence = read_sequence(out)
    assert sequence.num_frames == 1 and sequence.views == {} and sequence.mask_paths is None
    assert _no_leftovers(tmp_path) == ["seq"]


def test_writer_never_overwrites_a_folder_that_is_not_a_sequence(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    with pytest.raises(Hand4DGSError, match="is not a sequence folder"):
        SequenceWriter(tmp_path / "precious", overwrite=True)


def test_writer_rejects_a_mask_outside_0_to_3(tmp_path):
    with pytest.raises(Hand4DGSError, match=r"masks/000000\.png: holds the value 4"):
        with SequenceWriter(tmp_path / "seq") as writer:
            writer.add_frame(np.zeros((H, W, 3), np.uint8), np.full((H, W), 4, np.uint8))
    assert _no_leftovers(tmp_path) == []


def _rewrite_npz(file: Path, **changes) -> None:
    with np.load(file) as raw:
        arrays = {key: raw[key] for key in raw.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value(arrays[key]) if callable(value) else value
    np.savez(file, **arrays)


def _scale_rotation(c2w):
    c2w = c2w.copy()
    c2w[2, :3, :3] *= 2.0
    return c2w


def _nan_in_valid_joint(joints):
    joints = joints.copy()
    joints[0, 0, 3, 1] = np.nan
    return joints


BROKEN_LAYOUTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "missing rgb": (lambda s: shutil.rmtree(s / "rgb"), "rgb", "is missing"),
    "empty rgb": (lambda s: [p.unlink() for p in (s / "rgb").iterdir()], "rgb", "holds no .png or .jpg frame"),
    "missing cameras": (lambda s: (s / "cameras.npz").unlink(), "cameras.npz", "is missing"),
    "missing hands": (lambda s: (s / "hands.npz").unlink(), "hands.npz", "is missing"),
    "corrupt cameras": (lambda s: (s / "cameras.npz").write_bytes(b"not a zip"), "cameras.npz", "cannot be read"),
    "missing c2w": (lambda s: _rewrite_npz(s / "cameras.npz", c2w=None), "cameras.npz", "has no 'c2w' array"),
    "c2w shape": (
        lambda s: _rewrite_npz(s / "cameras.npz", c2w=lambda a: a[:, :3]),
        "cameras.npz",
        r"'c2w' has shape \(6, 3, 4\) but must be \(6, 4, 4\)",
    ),
    "K shape": (lambda s: _rewrite_npz(s / "cameras.npz", K=np.eye(3)[:2]), "cameras.npz", r"'K' has shape \(2, 3\)"),
    "K skew": (
        lambda s: _rewrite_npz(s / "cameras.npz", K=np.array([[5.0, 1, 2], [0, 5, 2], [0, 0, 1]])),
        "cameras.npz",
        "not a pinhole matrix",
    ),
    "non-rigid c2w": (
        lambda s: _rewrite_npz(s / "cameras.npz", c2w=_scale_rotation),
        "cameras.npz",
        "'c2w' of frame 2 is not a rigid transform",
    ),
    "fps": (lambda s: _rewrite_npz(s / "cameras.npz", fps=np.float32(-1)), "cameras.npz", "'fps' is -1"),
    "frame count": (
        lambda s: (s / "rgb" / "000005.png").unlink(),
        "cameras.npz",
        "'c2w' has 6 frames but rgb/ holds 5",
    ),
    "hands frame count": (
        lambda s: _rewrite_npz(s / "hands.npz", valid=lambda a: a[:4]),
        "hands.npz",
        "'valid' has 4 frames but rgb/ holds 6",
    ),
    "bbox shape": (
        lambda s: _rewrite_npz(s / "hands.npz", bbox=lambda a: a[:, :1]),
        "hands.npz",
        r"'bbox' has shape \(6, 1, 4\)",
    ),
    "missing pseudo_joints": (
        lambda s: _rewrite_npz(s / "hands.npz", pseudo_joints=None),
        "hands.npz",
        "has no 'pseudo_joints' array",
    ),
    "valid values": (
        lambda s: _rewrite_npz(s / "hands.npz", valid=lambda a: a.astype(np.int64) * 2),
        "hands.npz",
        "'valid' has dtype int64",
    ),
    "nan joint": (
        lambda s: _rewrite_npz(s / "hands.npz", pseudo_joints=_nan_in_valid_joint),
        "hands.npz",
        r"NaN or infinite value at index \(0, 0, 3, 1\)",
    ),
    "verts shape": (
        lambda s: _rewrite_npz(s / "hands.npz", pseudo_verts=lambda a: a[:, :, :, :2]),
        "hands.npz",
        "'pseudo_verts' has shape",
    ),
    "gt_valid alone": (
        lambda s: _rewrite_npz(s / "hands.npz", gt_joints=None),
        "hands.npz",
        "has 'gt_valid' but no 'gt_joints'",
    ),
    "mask count": (
        lambda s: (s / "masks" / "000002.png").unlink(),
        "masks",
        "holds 5 .png masks but rgb/ holds 6 frames",
    ),
    "mask name": (
        lambda s: (s / "masks" / "000005.png").rename(s / "masks" / "000009.png"),
        "000009.png",
        "does not match the frame 000005.png",
    ),
    "corrupt first frame": (
        lambda s: (s / "rgb" / "000000.png").write_bytes(b"garbage"),
        "000000.png",
        "cannot be read as an image",
    ),
    "view without cameras": (
        lambda s: (s / "views" / "cam0" / "cameras.npz").unlink(),
        "cam0/cameras.npz",
        "is missing",
    ),
    "view frame count": (
        lambda s: (s / "views" / "cam0" / "rgb" / "000001.png").unlink(),
        "cam0/rgb",
        "holds 5 frames but the main video has 6",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_LAYOUTS))
def test_broken_layout_gives_one_sentence_naming_the_file(make_sequence, case):
    sequence = make_sequence(views=("cam0",))
    damage, file, problem = BROKEN_LAYOUTS[case]
    damage(sequence)
    with pytest.raises(Hand4DGSError) as error:
        read_sequence(sequence)
    message = str(error.value)
    assert "\n" not in message and message.endswith(".")
    assert message.startswith(str(sequence)), message
    assert f"{file}:" in message, message
    assert re.search(problem, message), message


CHECKED_ONLY: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "corrupt frame": (
        lambda s: (s / "rgb" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
        "rgb/000003.png",
        "cannot be",
    ),
    "frame size": (
        lambda s: Image.new("RGB", (10, 10)).save(s / "rgb" / "000004.png"),
        "rgb/000004.png",
        "is 10x10 but the first frame is 64x48",
    ),
    "mask value": (
        lambda s: Image.fromarray(np.full((48, 64), 5, np.uint8)).save(s / "masks" / "000001.png"),
        "masks/000001.png",
        "holds the value 5",
    ),
    "mask channels": (
        lambda s: Image.new("RGB", (64, 48)).save(s / "masks" / "000001.png"),
        "masks/000001.png",
        "must be one channel",
    ),
    "corrupt view frame": (
        lambda s: (s / "views" / "cam0" / "rgb" / "000002.png").write_bytes(b"x"),
        "cam0/rgb/000002.png",
        "cannot be",
    ),
}


@pytest.mark.parametrize("case", sorted(CHECKED_ONLY))
def test_frame_problems_are_found_when_checked(make_sequence, case):
    sequence = make_sequence(views=("cam0",))
    damage, file, problem = CHECKED_ONLY[case]
    damage(sequence)
    read_sequence(sequence)  # only the first frame's header is read by default
    with pytest.raises(Hand4DGSError, match=problem) as error:
        read_sequence(sequence, check_frames=True)
    assert f"{file}:" in str(error.value) and "\n" not in str(error.value)


def test_find_sequences_accepts_one_sequence_or_a_folder_of_them(make_sequence, tmp_path):
    b = make_sequence("b")
    a = make_sequence("a", seed=1)
    (tmp_path / "notes").mkdir()
    (tmp_path / ".b.x.partial").mkdir()
    (tmp_path / ".b.x.partial" / "rgb").mkdir()
    assert find_sequences(b) == [b]
    assert find_sequences(tmp_path) == [a, b]
    assert is_sequence_folder(a) and not is_sequence_folder(tmp_path / "notes")
    with pytest.raises(Hand4DGSError, match="no sequence folder found"):
        find_sequences(tmp_path / "notes")
    with pytest.raises(Hand4DGSError, match="no such folder"):
        find_sequences(tmp_path / "missing")
