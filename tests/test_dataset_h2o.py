"""The H2O reader on a tiny dataset in the official layout: detection, cameras, ground truth
against smplx, boxes, views, the paper split and one clear error per kind of damage."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from hand4dgs_ns.datasets.h2o import (
    H2O_PAPER_SPLIT,
    find_h2o_sequences,
    h2o_hand_joints,
    h2o_paper_split,
    h2o_sequence_name,
    is_h2o_folder,
    read_h2o_sequence,
)
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands import load_mano
from hand4dgs_ns.hands.mano import MANO_TIP_VERTEX_IDS, MANO_TO_OPENPOSE

from fake_mano import write_fake_mano_dir
from h2o_fixture import MISSING_RIGHT_FRAME, STATIC, write_h2o_fixture


def numbers(file: Path) -> np.ndarray:
    return np.loadtxt(file, ndmin=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """MANO files (chumpy-style for the reader, plain pickles for smplx) and a two-subject H2O root."""
    tmp = tmp_path_factory.mktemp("h2o")
    with pytest.MonkeyPatch.context() as monkeypatch:
        arrays = write_fake_mano_dir(tmp / "mano", monkeypatch)
    plain = tmp / "plain"
    plain.mkdir()
    for side, a in arrays.items():
        (plain / f"MANO_{side}.pkl").write_bytes(pickle.dumps(a, protocol=2))
    root = write_h2o_fixture(tmp / "h2o", tmp / "mano", subjects=("subject1", "subject4"), actions=("h1", "k1"), sequences=(0, 1))
    return {"mano": tmp / "mano", "plain": plain, "arrays": arrays, "root": root, "seq": root / "subject4" / "h1" / "0"}


@pytest.fixture(scope="module")
def sequence(dataset: dict):
    return read_h2o_sequence(dataset["seq"], dataset["mano"])


@pytest.fixture
def fresh(tmp_path: Path, dataset: dict) -> Path:
    """A sequence folder of its own, to damage."""
    root = write_h2o_fixture(tmp_path / "h2o", dataset["mano"], num_frames=4)
    return root / "subject4" / "h1" / "0"


def test_detects_every_level_and_nothing_else(dataset: dict, tmp_path: Path, make_sequence: Callable[..., Path]):
    root, seq = dataset["root"], dataset["seq"]
    for level in (root, root / "subject4", root / "subject4" / "h1", seq, seq / "cam4"):
        assert is_h2o_folder(level), level
    everything = [root / s / a / str(n) for s in ("subject1", "subject4") for a in ("h1", "k1") for n in (0, 1)]
    assert find_h2o_sequences(root) == everything
    assert find_h2o_sequences(root / "subject4") == [root / "subject4" / a / str(n) for a in ("h1", "k1") for n in (0, 1)]
    assert find_h2o_sequences(root / "subject4" / "h1") == [seq, seq.parent / "1"]
    assert find_h2o_sequences(seq) == [seq]
    assert find_h2o_sequences(seq / "cam4") == [seq]

    other = make_sequence("v1_sequence").parent
    assert not is_h2o_folder(other)
    assert not is_h2o_folder(seq / "cam4" / "cam_intrinsics.txt")
    assert not is_h2o_folder(tmp_path / "absent")
    with pytest.raises(Hand4DGSError, match="holds no H2O sequence") as err:
        find_h2o_sequences(other)
    assert str(other) in str(err.value)
    with pytest.raises(Hand4DGSError, match="no such folder"):
        find_h2o_sequences(tmp_path / "absent")


def test_sequence_names(dataset: dict):
    seq = dataset["seq"]
    assert h2o_sequence_name(seq) == "subject4_h1_0"
    assert h2o_sequence_name(seq / "cam4") == "subject4_h1_0"


def test_cameras_are_the_files(dataset: dict, sequence):
    cam4 = dataset["seq"] / "cam4"
    fx, fy, cx, cy, width, height = numbers(cam4 / "cam_intrinsics.txt")
    F = 4
    assert sequence.dataset == "h2o" and sequence.name == "subject4_h1_0" and sequence.root == cam4
    assert sequence.frame_ids == [f"{i:06d}" for i in range(F)]
    assert sequence.image_paths == [cam4 / "rgb" / f"{i:06d}.png" for i in range(F)]
    assert (sequence.cameras.width, sequence.cameras.height, sequence.cameras.fps) == (int(width), int(height), 30.0)
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float32)
    np.testing.assert_array_equal(sequence.cameras.K, np.broadcast_to(K, (F, 3, 3)))
    c2w = np.stack([numbers(cam4 / "cam_pose" / f"{i:06d}.txt").reshape(4, 4) for i in range(F)]).astype(np.float32)
    np.testing.assert_array_equal(sequence.cameras.c2w, c2w)
    assert sequence.hamer_dir == cam4 / "hamer"


def smplx_world_joints(plain: Path, arrays: dict | None, seq: Path, side: str) -> np.ndarray:
    """Reference: smplx.MANO(use_pca=False, flat_hand_mean=True) + transl, moved to world by the file's c2w."""
    slot = 0 if side == "left" else 1
    model_path = plain / f"MANO_{side.upper()}.pkl"
    if arrays is not None:  # a variant of the model file, e.g. with the left-hand fix applied
        model_path = plain / "variant" / f"MANO_{side.upper()}.pkl"
        model_path.parent.mkdir(exist_ok=True)
        model_path.write_bytes(pickle.dumps(arrays, protocol=2))
    model = smplx.MANO(model_path=str(model_path), use_pca=False, flat_hand_mean=True, dtype=torch.float64)
    assert model.is_rhand == (side == "right")
    frames = sorted((seq / "cam4" / "hand_pose_mano").iterdir())
    hands = torch.from_numpy(np.stack([numbers(f) for f in frames])[:, 62 * slot : 62 * (slot + 1)])
    out = model(transl=hands[:, 1:4], global_orient=hands[:, 4:7], hand_pose=hands[:, 7:52], betas=hands[:, 52:62])
    joints = torch.cat([out.joints, out.vertices[:, list(MANO_TIP_VERTEX_IDS)]], dim=1)[:, list(MANO_TO_OPENPOSE)].numpy()
    c2w = np.stack([numbers(seq / "cam4" / "cam_pose" / f.name).reshape(4, 4) for f in frames])
    return np.einsum("fij,fnj->fni", c2w[:, :3, :3], joints) + c2w[:, None, :3, 3]


def test_ground_truth_matches_smplx_in_world(dataset: dict, sequence):
    flags = np.stack([numbers(f)[[0, 62]] for f in sorted((dataset["seq"] / "cam4" / "hand_pose_mano").iterdir())]) > 0.5
    np.testing.assert_array_equal(sequence.gt_valid, flags)
    assert not sequence.gt_valid[MISSING_RIGHT_FRAME, 1] and sequence.gt_valid.sum() == 7
    for slot, side in enumerate(("left", "right")):
        expected = smplx_world_joints(dataset["plain"], None, dataset["seq"], side)
        valid = sequence.gt_valid[:, slot]
        np.testing.assert_allclose(sequence.gt_joints[valid, slot], expected[valid], atol=2e-6, rtol=0)
    assert (sequence.gt_joints[MISSING_RIGHT_FRAME, 1] == 0).all()
    assert sequence.gt_joints.dtype == np.float32 and sequence.gt_joints.shape == (4, 2, 21, 3)


def test_left_hand_keeps_the_unfixed_shapedirs(dataset: dict, sequence):
    left = dataset["arrays"]["LEFT"]
    fixed = {**left, "shapedirs": left["shapedirs"] * np.array([-1.0, 1.0, 1.0])[:, None]}
    with_fix = smplx_world_joints(dataset["plain"], fixed, dataset["seq"], "left")
    difference = np.abs(sequence.gt_joints[:, 0] - with_fix).max()
    assert difference > 1e-3, "the reader must reproduce H2O's ground truth without the left-hand fix"


def test_boxes_contain_the_projected_joints(dataset: dict, sequence):
    cameras = sequence.cameras
    w2c = np.linalg.inv(cameras.c2w.astype(np.float64))
    p_cam = np.einsum("fij,fhnj->fhni", w2c[:, :3, :3], sequence.gt_joints) + w2c[:, None, None, :3, 3]
    uvw = np.einsum("fij,fhnj->fhni", cameras.K.astype(np.float64), p_cam)
    uv = uvw[..., :2] / uvw[..., 2:]
    np.testing.assert_array_equal(sequence.box_valid, sequence.gt_valid)
    for f, slot in zip(*np.nonzero(sequence.box_valid)):
        x0, y0, x1, y1 = sequence.bbox[f, slot]
        lo, hi = uv[f, slot].min(axis=0), uv[f, slot].max(axis=0)
        assert x0 <= lo[0] and y0 <= lo[1] and hi[0] <= x1 and hi[1] <= y1
        assert 0 <= x0 and 0 <= y0 and x1 <= cameras.width and y1 <= cameras.height
        assert x1 - x0 >= 16 and y1 - y0 >= 16
    assert (sequence.bbox[~sequence.box_valid] == 0).all()
    # Without a margin the boxes hug the joints; the fixture keeps every joint inside the image.
    tight = read_h2o_sequence(dataset["seq"], dataset["mano"], box_margin=0.0)
    for f, slot in zip(*np.nonzero(tight.box_valid)):
        hug = np.concatenate([uv[f, slot].min(axis=0), uv[f, slot].max(axis=0)])
        np.testing.assert_allclose(tight.bbox[f, slot], hug, atol=1e-3)
        x0, y0, x1, y1 = sequence.bbox[f, slot]
        assert x0 < tight.bbox[f, slot, 0] or x0 == 0


def test_detections_replace_the_boxes(dataset: dict, tmp_path: Path):
    bbox = np.tile(np.array([1.0, 2.0, 30.0, 33.0], np.float32), (4, 2, 1))
    valid = np.ones((4, 2), bool)
    valid[2, 0] = False
    file = tmp_path / "detections.npz"
    np.savez(file, bbox=bbox, valid=valid)
    seq = read_h2o_sequence(dataset["seq"], dataset["mano"], detections=file)
    np.testing.assert_array_equal(seq.box_valid, valid)
    np.testing.assert_array_equal(seq.bbox[valid], bbox[valid])
    assert (seq.bbox[2, 0] == 0).all()

    np.savez(file, bbox=bbox[:3], valid=valid[:3])
    with pytest.raises(Hand4DGSError, match="bbox") as err:
        read_h2o_sequence(dataset["seq"], dataset["mano"], detections=file)
    assert str(file) in str(err.value)
    with pytest.raises(Hand4DGSError, match="is missing"):
        read_h2o_sequence(dataset["seq"], dataset["mano"], detections=tmp_path / "none.npz")


def test_static_cameras_are_views_in_the_same_world(dataset: dict, sequence):
    assert list(sequence.views) == list(STATIC)
    templates = [load_mano(dataset["mano"] / f"MANO_{s}.pkl", flat_hand_mean=True) for s in ("LEFT", "RIGHT")]
    for name, view in sequence.views.items():
        folder = dataset["seq"] / name
        assert view.name == name and view.image_paths == [folder / "rgb" / f"{i:06d}.png" for i in range(4)]
        fx, fy, cx, cy, width, height = numbers(folder / "cam_intrinsics.txt")
        assert (view.cameras.width, view.cameras.height) == (int(width), int(height))
        np.testing.assert_array_equal(view.cameras.K[0], np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float32))
        mano = np.stack([numbers(folder / "hand_pose_mano" / f"{i:06d}.txt") for i in range(4)])
        mano_joints, mano_valid = h2o_hand_joints(mano, *templates)
        np.testing.assert_array_equal(mano_valid, sequence.gt_valid)
        for i in range(4):
            c2w = numbers(folder / "cam_pose" / f"{i:06d}.txt").reshape(4, 4)
            np.testing.assert_array_equal(view.cameras.c2w[i], c2w.astype(np.float32))
            # The view's own annotations, moved to the world with its pose, are the ground truth.
            hand_pose = numbers(folder / "hand_pose" / f"{i:06d}.txt")
            for slot in np.nonzero(sequence.gt_valid[i])[0]:
                joints = hand_pose[64 * slot + 1 : 64 * slot + 64].reshape(21, 3)
                truth = sequence.gt_joints[i, slot]
                np.testing.assert_allclose(joints @ c2w[:3, :3].T + c2w[:3, 3], truth, atol=1e-5)
                np.testing.assert_allclose(mano_joints[i, slot] @ c2w[:3, :3].T + c2w[:3, 3], truth, atol=1e-5)


def test_a_static_camera_without_frames_is_left_out(dataset: dict, fresh: Path):
    shutil.rmtree(fresh / "cam1" / "rgb")
    seq = read_h2o_sequence(fresh, dataset["mano"])
    assert list(seq.views) == ["cam0", "cam2", "cam3"]


def test_hamer_root_names_the_video_folder(dataset: dict, tmp_path: Path):
    seq = read_h2o_sequence(dataset["seq"] / "cam4", dataset["mano"], hamer_root=tmp_path / "hamer")
    assert seq.hamer_dir == tmp_path / "hamer" / "subject4_h1_0" and seq.name == "subject4_h1_0"


def test_paper_split(dataset: dict, tmp_path: Path):
    root = dataset["root"]
    train, test = h2o_paper_split(root)
    assert train == [root / "subject1" / a / str(n) for a in ("h1", "k1") for n in (0, 1)]
    assert test == [root / "subject4" / "h1" / "0", root / "subject4" / "h1" / "1"]
    assert H2O_PAPER_SPLIT.train_subjects == ("subject1", "subject2", "subject3")
    assert H2O_PAPER_SPLIT.test_actions == (("subject4", "h1"),)
    other = write_h2o_fixture(tmp_path / "h2o", dataset["mano"], subjects=("subject4",), actions=("k2",), num_frames=1)
    with pytest.raises(Hand4DGSError, match="subject4/h1") as err:
        h2o_paper_split(other)
    assert str(other) in str(err.value)


def test_folder_names_match_case_insensitively(dataset: dict, fresh: Path):
    (fresh / "cam4" / "hand_pose_mano").rename(fresh / "cam4" / "hand_pose_MANO")
    (fresh / "cam4" / "cam_pose").rename(fresh / "cam4" / "Cam_Pose")
    seq = read_h2o_sequence(fresh, dataset["mano"])
    assert seq.gt_valid.sum() == 7 and seq.box_valid.sum() == 7


def _remove(rel: str) -> Callable[[Path], None]:
    def apply(seq: Path) -> None:
        path = seq / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return apply


def _empty(rel: str) -> Callable[[Path], None]:
    return lambda seq: [p.unlink() for p in (seq / rel).iterdir()]



def test_the_object_box_is_read_for_the_masks(dataset: dict, fresh: Path):
    """cam4/obj_pose (class, then 21 box points in the camera frame) becomes the object's box in
    the world frame, frame by frame; class 0 means no object; a short file is named."""
    assert read_h2o_sequence(fresh, dataset["mano"]).objects is None  # the folder is optional
    rng = np.random.default_rng(4)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64) * [0.03, 0.05, 0.08]
    folder = fresh / "cam4" / "obj_pose"
    folder.mkdir()
    expected = []
    for i in range(4):
        R = torch.linalg.qr(torch.from_numpy(rng.normal(size=(3, 3))))[0].numpy()
        R *= np.sign(np.linalg.det(R))
        points = np.concatenate([[[0, 0, 0]], corners, np.zeros((12, 3))]) @ R.T + [0.02 * i, 0.0, 0.4]
        (folder / f"{i:06d}.txt").write_text(" ".join(map(repr, [0 if i == 2 else 3, *points.reshape(-1)])))
        expected.append(points[1:9])
    seq = read_h2o_sequence(fresh, dataset["mano"])
    track = seq.objects
    assert track is not None and track.present.tolist() == [True, True, False, True] and len(track.faces) == 12
    c2w = np.asarray(seq.cameras.c2w, np.float64)
    for i in (0, 1, 3):
        world = expected[i] @ c2w[i, :3, :3].T + c2w[i, :3, 3]
        np.testing.assert_allclose(track.vertices(np.array([i]))[0], world, atol=1e-6)
    from hand4dgs_ns.datasets.objects import h2o_object_track

    assert h2o_object_track(np.ones(4, np.int64), np.zeros((4, 21, 3)), c2w) is None  # a collapsed box: nothing to draw
    (folder / "000001.txt").write_text(_many("1", 60))
    with pytest.raises(Hand4DGSError, match="000001.txt"):
        read_h2o_sequence(fresh, dataset["mano"])


def _rename(rel: str, new_name: str) -> Callable[[Path], None]:
    return lambda seq: (seq / rel).rename((seq / rel).with_name(new_name))


def _put(rel: str, text: str) -> Callable[[Path], None]:
    return lambda seq: (seq / rel).write_text(text)


def _many(value: str, count: int) -> str:
    return " ".join([value] * count)


INTRINSICS, CAM_POSE, MANO_POSE = "cam4/cam_intrinsics.txt", "cam4/cam_pose", "cam4/hand_pose_mano"
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (what to do to the sequence folder, the path the message must name, words it must hold)
    "no cam4": (_rename("cam4", "camera4"), "", "has no cam4/ folder"),
    "no rgb": (_remove("cam4/rgb"), "cam4/rgb", "is missing"),
    "empty rgb": (_empty("cam4/rgb"), "cam4/rgb", "no .png"),
    "no intrinsics": (_remove(INTRINSICS), INTRINSICS, "is missing"),
    "short intrinsics": (_put(INTRINSICS, "600 600 32 18\n"), INTRINSICS, "holds 4 numbers but must hold 6"),
    "frame size": (_put(INTRINSICS, "60 60 32 18 1280 720\n"), "cam4/rgb/000000.png", "1280x720"),
    "no cam_pose": (_remove(CAM_POSE), CAM_POSE, "is missing"),
    "cam_pose count": (_remove(f"{CAM_POSE}/000002.txt"), CAM_POSE, "holds 3 .txt files but"),
    "cam_pose name": (_rename(f"{CAM_POSE}/000002.txt", "000009.txt"), f"{CAM_POSE}/000002.txt", "is missing"),
    "short cam_pose": (_put(f"{CAM_POSE}/000001.txt", _many("1", 15)), f"{CAM_POSE}/000001.txt", "holds 15 numbers but"),
    "not rigid": (_put(f"{CAM_POSE}/000002.txt", _many("2", 16)), f"{CAM_POSE}/000002.txt", "not a rigid"),
    "no mano": (_remove(MANO_POSE), MANO_POSE, "is missing"),
    "mano count": (_remove(f"{MANO_POSE}/000003.txt"), MANO_POSE, "holds 3 .txt files but"),
    # The official README's count (59 per hand) is wrong; a file holding it must be refused.
    "readme mano count": (_put(f"{MANO_POSE}/000003.txt", _many("0", 118)), f"{MANO_POSE}/000003.txt", "must hold 124"),
    "not numbers": (_put(f"{MANO_POSE}/000000.txt", _many("x", 124)), f"{MANO_POSE}/000000.txt", "not a number"),
    "view frames": (_remove("cam2/rgb/000001.png"), "cam2/rgb", "do not match"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_gives_one_sentence_naming_the_file(dataset: dict, fresh: Path, damage: str):
    apply, where, words = DAMAGE[damage]
    apply(fresh)
    with pytest.raises(Hand4DGSError) as err:
        read_h2o_sequence(fresh, dataset["mano"])
    message = str(err.value)
    assert str(fresh / where).rstrip("/") in message and words in message, message
    assert message.endswith(".") and "\n" not in message


def test_missing_mano_file_is_named(dataset: dict, fresh: Path, tmp_path: Path):
    mano = tmp_path / "mano_copy"
    shutil.copytree(dataset["mano"], mano)
    (mano / "MANO_LEFT.pkl").unlink()
    with pytest.raises(Hand4DGSError, match="MANO_LEFT.pkl") as err:
        read_h2o_sequence(fresh, mano)
    assert str(mano / "MANO_LEFT.pkl") in str(err.value)
