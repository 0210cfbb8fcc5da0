"""The ARCTIC reader on a tiny dataset written in ARCTIC's exact layout (tests/arctic_fixture.py)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import smplx
import torch

from hand4dgs_ns.datasets.arctic import (
    ARCTIC_OBJECTS,
    ARCTIC_PAPER_SPLIT,
    arctic_data_dir,
    articulation_range,
    find_arctic_sequences,
    is_arctic_folder,
    read_arctic_sequence,
)
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.mano import MANO_TIP_VERTEX_IDS, MANO_TO_OPENPOSE

from arctic_fixture import arctic_fixture_data_dir, write_arctic_fixture
from fake_mano import write_fake_mano_dir

SID, SEQ = "s05", "box_grab_01"


@pytest.fixture
def mano(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """Chumpy-style fake MANO files and the arrays they hold, by side ("RIGHT", "LEFT")."""
    folder = tmp_path / "mano"
    return folder, write_fake_mano_dir(folder, monkeypatch)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The data/arctic_data/data folder of one sequence: 10 annotated frames, ioi_offset 2."""
    return arctic_fixture_data_dir(write_arctic_fixture(tmp_path / "arctic"))


def read(data: Path, mano_dir: Path, tmp_path: Path, **options):
    options = {"trim": 2, "cache_dir": tmp_path / "cache", **options}
    return read_arctic_sequence(data, SID, options.pop("seq", SEQ), mano_dir, **options)


def load_dict(file: Path) -> dict:
    return np.load(file, allow_pickle=True).item()


def raw_file(data: Path, suffix: str, seq: str = SEQ) -> Path:
    return data / "raw_seqs" / SID / f"{seq}.{suffix}"


def world_to_ego(data: Path) -> np.ndarray:
    egocam = load_dict(raw_file(data, "egocam.dist.npy"))
    w2c = np.tile(np.eye(4), (len(egocam["R_k_cam_np"]), 1, 1))
    w2c[:, :3, :3] = egocam["R_k_cam_np"]
    w2c[:, :3, 3] = egocam["T_k_cam_np"][..., 0]
    return w2c


def as_cached_jpeg(image: np.ndarray) -> np.ndarray:
    """``image`` after the cache's documented JPEG round trip (quality 95, no chroma subsampling)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    return cv2.imdecode(cv2.imencode(".jpg", image, params)[1], cv2.IMREAD_COLOR)


def assert_one_sentence(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, (part, message)
    assert message.endswith(".") and message.count(". ") == 0, message


# Detection and listing


def test_detection_at_every_documented_level(tmp_path: Path):
    root = write_arctic_fixture(
        tmp_path / "arctic", ("s05", "s01"), ("box_grab_01", "ketchup_grab_01"), num_annotated=4, views=False
    )
    data = arctic_fixture_data_dir(root)
    for path in (
        root,
        root / "data",
        data.parent,
        data,
        data / "raw_seqs",
        data / "images",
        data / "cropped_images",
        data / "raw_seqs" / "s05",
        data / "images" / "s05",
    ):
        assert is_arctic_folder(path) and arctic_data_dir(path) == data, path
    assert find_arctic_sequences(root) == [
        ("s01", "box_grab_01"),
        ("s01", "ketchup_grab_01"),
        ("s05", "box_grab_01"),
        ("s05", "ketchup_grab_01"),
    ]
    assert find_arctic_sequences(data / "raw_seqs" / "s05") == [("s05", "box_grab_01"), ("s05", "ketchup_grab_01")]
    assert find_arctic_sequences(data / "images" / "s01" / "ketchup_grab_01") == [("s01", "ketchup_grab_01")]
    assert find_arctic_sequences(root, subjects=("s05",), sequences=("ketchup_grab_01",)) == [
        ("s05", "ketchup_grab_01")
    ]
    assert find_arctic_sequences(root, sequences=("s01/box_grab_01", "ketchup_grab_01")) == [
        ("s01", "box_grab_01"),
        ("s01", "ketchup_grab_01"),
        ("s05", "ketchup_grab_01"),
    ]
    other = tmp_path / "h2o" / "subject1" / "h1"
    other.mkdir(parents=True)
    for path in (tmp_path / "h2o", other, data / "meta", data / "images" / "s05" / "box_grab_01" / "0"):
        assert not is_arctic_folder(path) and arctic_data_dir(path) is None, path


def test_listing_errors(tmp_path: Path):
    root = write_arctic_fixture(tmp_path / "arctic", num_annotated=4, views=False, cropped=False)
    raw = arctic_fixture_data_dir(root) / "raw_seqs"
    with pytest.raises(Hand4DGSError) as err:
        find_arctic_sequences(root, subjects=("s09",))
    assert_one_sentence(str(err.value), str(raw), "s09")
    with pytest.raises(Hand4DGSError) as err:
        find_arctic_sequences(root, sequences=("box_grab_01", "laptop_grab_01"), require_all=True)
    assert_one_sentence(str(err.value), str(raw), "laptop_grab_01")
    with pytest.raises(Hand4DGSError) as err:
        find_arctic_sequences(tmp_path / "nowhere")
    assert_one_sentence(str(err.value), str(tmp_path / "nowhere"), "data/arctic_data/data")
    shutil.rmtree(raw)
    assert is_arctic_folder(root)  # meta/misc.json is left: recognised, so the error can be precise
    with pytest.raises(Hand4DGSError) as err:
        find_arctic_sequences(root)
    assert_one_sentence(str(err.value), str(raw), "raw_seqs.zip")


def test_paper_split_preset(tmp_path: Path):
    split = ARCTIC_PAPER_SPLIT
    assert split.train_subjects == ("s01", "s08", "s09")
    assert len(split.test_sequences) == len(set(split.test_sequences)) == 5
    for sid, seq in split.test_sequences:
        assert sid == "s05" and seq.endswith("_grab_01") and seq[: -len("_grab_01")] in ARCTIC_OBJECTS
    assert not set(split.train_subjects) & {sid for sid, _ in split.test_sequences}
    names = tuple(seq for _, seq in split.test_sequences)
    root = write_arctic_fixture(
        tmp_path / "arctic",
        ("s01", "s05"),
        (*names, "box_grab_01", "box_use_01"),
        num_annotated=3,
        views=False,
        cropped=False,
    )
    wanted = tuple(f"{sid}/{seq}" for sid, seq in split.test_sequences)
    assert find_arctic_sequences(root, sequences=wanted, require_all=True) == sorted(split.test_sequences)
    assert {sid for sid, _ in find_arctic_sequences(root, subjects=split.train_subjects)} == {"s01"}
    with pytest.raises(Hand4DGSError, match="s08, s09"):
        find_arctic_sequences(root, subjects=split.train_subjects, require_all=True)


def test_articulation_range(data: Path):
    file = raw_file(data, "object.npy")
    assert articulation_range(data, SID, SEQ) == 0.0
    params = np.load(file)
    params[:, 0] = np.linspace(0.1, 0.6, len(params))
    np.save(file, params)
    assert articulation_range(data, SID, SEQ) == pytest.approx(0.5)
    with pytest.raises(Hand4DGSError, match="laptop_grab_01.object.npy"):
        articulation_range(data, SID, "laptop_grab_01")


# Reading one sequence


def test_sequence_fields_and_camera_inversion(data: Path, mano, tmp_path: Path):
    seq = read(data, mano[0], tmp_path)
    assert (seq.dataset, seq.name, seq.num_frames) == ("arctic", "s05_box_grab_01", 6)
    assert seq.root == data / "images" / SID / SEQ
    assert seq.hamer_dir == data / "hamer" / SID / SEQ
    assert (
        read(data, mano[0], tmp_path, hamer_root=tmp_path / "hamer").hamer_dir == tmp_path / "hamer" / "s05_box_grab_01"
    )
    cams = seq.cameras
    assert (cams.width, cams.height, cams.fps, cams.K.shape, cams.c2w.shape) == (200, 140, 30.0, (6, 3, 3), (6, 4, 4))
    np.testing.assert_allclose(
        cams.K, np.broadcast_to(load_dict(raw_file(data, "egocam.dist.npy"))["intrinsics"], (6, 3, 3)), rtol=1e-6
    )
    w2c = world_to_ego(data)[2:8]
    np.testing.assert_allclose(cams.c2w @ w2c, np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-5)
    centres = -np.einsum("fji,fj->fi", w2c[:, :3, :3], w2c[:, :3, 3])
    np.testing.assert_allclose(cams.c2w[:, :3, 3], centres, atol=1e-6)
    assert np.linalg.norm(centres, axis=-1).min() > 0.3  # the fixture's camera sits 0.45 m from the origin



def _write_object_template(data: Path, name: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """A 6 cm box template (mm) whose upper half is the top part, in ARCTIC's files."""
    import trimesh

    box = trimesh.creation.box(extents=(60.0, 60.0, 60.0))
    folder = data / "meta" / "object_vtemplates" / name
    folder.mkdir(parents=True)
    box.export(folder / "mesh.obj")
    vertices = np.asarray(trimesh.load(folder / "mesh.obj", process=False, force="mesh").vertices)
    is_bottom = vertices[:, 2] < 0
    (folder / "parts.json").write_text(json.dumps(is_bottom.tolist()))
    return vertices, is_bottom


def test_the_object_is_read_for_the_masks(data: Path, mano, tmp_path: Path):
    """With its template in meta/object_vtemplates, the object moves as ARCTIC poses it: the top
    part turned by the articulation about the object's -z axis, then rotated and moved (mm)."""
    assert read(data, mano[0], tmp_path).objects is None  # no template: no object, no error
    vertices, is_bottom = _write_object_template(data)
    params = np.load(raw_file(data, "object.npy"))
    params[:, 0] = 0.7  # the lid opened by 0.7 rad
    np.save(raw_file(data, "object.npy"), params)
    track = read(data, mano[0], tmp_path).objects
    assert track is not None and track.present.all() and len(track.present) == 6
    frame = 3  # trim 2: annotation index 5
    angle, rot, trans = params[frame + 2, 0], params[frame + 2, 1:4], params[frame + 2, 4:7]
    R = cv2.Rodrigues(rot)[0]
    lid = cv2.Rodrigues(np.array([0.0, 0.0, -angle]))[0]
    expected = np.where(is_bottom[:, None], vertices @ R.T, vertices @ lid.T @ R.T) / 1000.0 + trans / 1000.0
    np.testing.assert_allclose(track.vertices(np.array([frame]))[0], expected, atol=1e-9)

    (data / "meta" / "object_vtemplates" / "box" / "parts.json").write_text(json.dumps([True, False]))
    with pytest.raises(Hand4DGSError, match="parts.json"):
        read(data, mano[0], tmp_path)


def test_default_cache_is_under_the_cache_root(data: Path, mano, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "root"))
    seq = read_arctic_sequence(data, SID, SEQ, mano[0], trim=2)
    assert all(p.parent == tmp_path / "root" / "arctic_undistorted" / SID / SEQ / "images" for p in seq.image_paths)


def test_ioi_offset_alignment_and_trim(tmp_path: Path, mano):
    data = arctic_fixture_data_dir(
        write_arctic_fixture(tmp_path / "arctic", num_annotated=10, ioi_offset=3, views=False)
    )
    images = sorted(p.stem for p in (data / "images" / SID / SEQ / "0").iterdir())
    assert images[0] == "00001" and images[-1] == "00014"  # 2 before, 1 after the annotations
    whole = read(data, mano[0], tmp_path, trim=0)
    assert whole.frame_ids == [f"{n:05d}" for n in range(3, 13)]  # annotation 0..9 = image 3..12
    trimmed = read(data, mano[0], tmp_path, trim=3)
    assert trimmed.frame_ids == ["00006", "00007", "00008", "00009"]  # annotations 3..6
    assert [p.name.split(".")[0] for p in trimmed.image_paths] == trimmed.frame_ids
    np.testing.assert_array_equal(trimmed.gt_joints, whole.gt_joints[3:7])
    np.testing.assert_array_equal(trimmed.cameras.c2w, whole.cameras.c2w[3:7])
    np.testing.assert_allclose(
        whole.cameras.c2w @ world_to_ego(data), np.broadcast_to(np.eye(4), (10, 4, 4)), atol=1e-5
    )


def test_default_trim_drops_100_annotated_frames_at_each_end(tmp_path: Path, mano):
    root = write_arctic_fixture(
        tmp_path / "arctic", num_annotated=203, ioi_offset=1, width=48, height=32, views=False, cropped=False
    )
    data = arctic_fixture_data_dir(root)
    seq = read_arctic_sequence(data, SID, SEQ, mano[0], cache_dir=tmp_path / "cache")
    assert seq.frame_ids == ["00101", "00102", "00103"]  # annotations 100, 101, 102 of 0..202
    with pytest.raises(Hand4DGSError) as err:
        read_arctic_sequence(data, SID, SEQ, mano[0], cache_dir=tmp_path / "cache", trim=102)
    assert_one_sentence(str(err.value), str(raw_file(data, "mano.npy")), "203", "smaller trim")


def test_undistortion_matches_opencv_and_is_cached(data: Path, mano, tmp_path: Path):
    seq = read(data, mano[0], tmp_path)
    cache = tmp_path / "cache" / SID / SEQ / "images"
    assert all(p.parent == cache and p.is_file() for p in seq.image_paths)
    egocam = load_dict(raw_file(data, "egocam.dist.npy"))
    for frame_id, cached in zip(seq.frame_ids, seq.image_paths):
        source = cv2.imread(str(data / "images" / SID / SEQ / "0" / f"{frame_id}.jpg"))
        expected = cv2.undistort(source, egocam["intrinsics"], egocam["dist8"])
        np.testing.assert_array_equal(cv2.imread(str(cached)), as_cached_jpeg(expected))
        assert np.abs(source - expected.astype(float)).mean() > 6.0  # undistortion did move the pixels

    mtimes = {p: p.stat().st_mtime_ns for p in seq.image_paths}
    first_before = cv2.imread(str(seq.image_paths[0])).astype(float)
    again = read(data, mano[0], tmp_path)
    assert again.image_paths == seq.image_paths
    assert {p: p.stat().st_mtime_ns for p in again.image_paths} == mtimes
    assert sorted(cache.iterdir()) == sorted(seq.image_paths)  # nothing else, no temporary files

    egocam["dist8"] = egocam["dist8"] * 1.5
    np.save(raw_file(data, "egocam.dist.npy"), egocam)
    changed = read(data, mano[0], tmp_path)
    assert [p.name.split(".")[0] for p in changed.image_paths] == seq.frame_ids
    assert not set(changed.image_paths) & set(seq.image_paths)
    assert sorted(cache.iterdir()) == sorted(changed.image_paths)  # the stale copies are gone
    assert np.abs(cv2.imread(str(changed.image_paths[0])).astype(float) - first_before).mean() > 1.0

    source = data / "images" / SID / SEQ / "0" / "00005.jpg"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    touched = read(data, mano[0], tmp_path)
    assert [a == b for a, b in zip(touched.image_paths, changed.image_paths)] == [True, False, True, True, True, True]


def test_interrupted_undistortion_leaves_no_partial_file(
    data: Path, mano, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls = []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        os.rename(src, dst)

    monkeypatch.setattr("hand4dgs_ns.datasets.arctic.os.replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        read(data, mano[0], tmp_path)
    cache = tmp_path / "cache" / SID / SEQ / "images"
    written = sorted(cache.iterdir())
    assert len(written) == 2 and all(cv2.imread(str(p)) is not None for p in written)
    monkeypatch.undo()
    seq = read(data, mano[0], tmp_path)
    assert sorted(cache.iterdir()) == sorted(seq.image_paths) and set(written) <= set(seq.image_paths)


def test_cropped_images_scale_k(data: Path, mano, tmp_path: Path):
    full = read(data, mano[0], tmp_path)
    cropped = read(data, mano[0], tmp_path, cropped=True)
    assert (cropped.cameras.width, cropped.cameras.height) == (60, 42)
    assert cropped.frame_ids == full.frame_ids
    scale = np.diag([0.3, 0.3, 1.0])
    np.testing.assert_allclose(cropped.cameras.K, scale @ full.cameras.K, rtol=1e-6)
    np.testing.assert_array_equal(cropped.cameras.c2w, full.cameras.c2w)
    assert all(p.parent == tmp_path / "cache" / SID / SEQ / "cropped_images" for p in cropped.image_paths)
    egocam = load_dict(raw_file(data, "egocam.dist.npy"))
    source = cv2.imread(str(data / "cropped_images" / SID / SEQ / "0" / f"{cropped.frame_ids[0]}.jpg"))
    expected = cv2.undistort(source, scale @ egocam["intrinsics"], egocam["dist8"])
    np.testing.assert_array_equal(cv2.imread(str(cropped.image_paths[0])), as_cached_jpeg(expected))
    both = full.box_valid & cropped.box_valid
    np.testing.assert_allclose(cropped.bbox[both], 0.3 * full.bbox[both], atol=1e-3)


def smplx_joints(plain_dir: Path, side: str, rot, pose, shape, trans) -> np.ndarray:
    model = smplx.MANO(
        model_path=str(plain_dir / f"MANO_{side.upper()}.pkl"),
        is_rhand=side == "right",
        use_pca=False,
        flat_hand_mean=False,
        dtype=torch.float64,
    )
    as_tensor = lambda a: torch.tensor(np.array(a, np.float64))  # noqa: E731
    out = model(
        global_orient=as_tensor(rot), hand_pose=as_tensor(pose), betas=as_tensor(shape), transl=as_tensor(trans)
    )
    tips = out.vertices[:, list(MANO_TIP_VERTEX_IDS)]
    return torch.cat([out.joints, tips], dim=1)[:, list(MANO_TO_OPENPOSE)].detach().numpy()


def test_ground_truth_joints_match_smplx_mano(data: Path, mano, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("hand4dgs_ns.datasets.arctic._MANO_BATCH", 4)  # 6 frames: a full chunk and a partial one
    mano_dir, arrays = mano
    plain = tmp_path / "plain_mano"
    plain.mkdir()
    for side, a in arrays.items():
        (plain / f"MANO_{side}.pkl").write_bytes(pickle.dumps(a, protocol=2))
    seq = read(data, mano_dir, tmp_path)
    params = load_dict(raw_file(data, "mano.npy"))
    kept = slice(2, 8)
    assert seq.gt_valid.all() and seq.gt_joints.shape == (6, 2, 21, 3)
    for slot, side in enumerate(("left", "right")):
        p = params[side]
        shape = np.broadcast_to(p["shape"], (10, 10))[kept]  # (10,) for the right hand, (F, 10) for the left
        expected = smplx_joints(plain, side, p["rot"][kept], p["pose"][kept], shape, p["trans"][kept])
        np.testing.assert_allclose(seq.gt_joints[:, slot], expected, atol=1e-6)
    assert np.abs(seq.gt_joints[:, 0] - seq.gt_joints[:, 1]).max() > 0.05  # left and right really differ

    params["left"]["pose"][4, 7] = np.nan
    np.save(raw_file(data, "mano.npy"), params)
    with_gap = read(data, mano_dir, tmp_path)
    assert with_gap.gt_valid.tolist() == [
        [True, True],
        [True, True],
        [False, True],
        [True, True],
        [True, True],
        [True, True],
    ]
    assert not with_gap.box_valid[2, 0] and (with_gap.gt_joints[2, 0] == 0).all()


def test_boxes_contain_projected_joints(data: Path, mano, tmp_path: Path):
    seq = read(data, mano[0], tmp_path)
    assert seq.box_valid.all()  # the fixture's hands are well inside the frame
    w2c = np.linalg.inv(seq.cameras.c2w.astype(np.float64))
    p_cam = np.einsum("fij,fhkj->fhki", w2c[:, :3, :3], seq.gt_joints) + w2c[:, None, None, :3, 3]
    uvw = np.einsum("fij,fhkj->fhki", seq.cameras.K.astype(np.float64), p_cam)
    uv = np.clip(uvw[..., :2] / uvw[..., 2:], 0, [seq.cameras.width, seq.cameras.height])
    lo, hi = seq.bbox[..., None, :2], seq.bbox[..., None, 2:]
    assert ((uv >= lo - 1e-3) & (uv <= hi + 1e-3)).all()
    joint_span = uv.max(axis=2) - uv.min(axis=2)
    box_span = seq.bbox[..., 2:] - seq.bbox[..., :2]
    assert (box_span > joint_span).all()  # grown by the margin
    tight = read(data, mano[0], tmp_path, box_margin=0.0)
    np.testing.assert_allclose(tight.bbox[..., :2], uv.min(axis=2), atol=1e-3)
    np.testing.assert_allclose(tight.bbox[..., 2:], uv.max(axis=2), atol=1e-3)


def test_static_views(data: Path, mano, tmp_path: Path):
    seq = read(data, mano[0], tmp_path)
    assert list(seq.views) == [f"view{v}" for v in range(1, 9)]
    misc = json.loads((data / "meta" / "misc.json").read_text())[SID]
    for v in range(1, 9):
        view = seq.views[f"view{v}"]
        assert view.name == f"view{v}"
        assert view.image_paths == [data / "images" / SID / SEQ / str(v) / f"{i}.jpg" for i in seq.frame_ids]
        assert (view.cameras.width, view.cameras.height, view.cameras.num_frames) == (200, 140, 6)
        np.testing.assert_allclose(
            view.cameras.c2w @ np.asarray(misc["world2cam"][v - 1]), np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-5
        )
        np.testing.assert_allclose(view.cameras.K, np.broadcast_to(misc["intris_mat"][v - 1], (6, 3, 3)), rtol=1e-6)
    assert read(data, mano[0], tmp_path, cropped=True).views.keys() == seq.views.keys()  # full-resolution views

    (data / "images" / SID / SEQ / "3" / f"{seq.frame_ids[2]}.jpg").unlink()
    assert "view3" not in read(data, mano[0], tmp_path).views
    for key in ("world2cam", "intris_mat"):
        misc_all = json.loads((data / "meta" / "misc.json").read_text())
        del misc_all[SID][key]
        (data / "meta" / "misc.json").write_text(json.dumps(misc_all))
        assert read(data, mano[0], tmp_path).views == {}


def test_no_views_without_cameras_in_misc(tmp_path: Path, mano):
    data = arctic_fixture_data_dir(
        write_arctic_fixture(tmp_path / "arctic", num_annotated=6, static_cameras_in_misc=False, cropped=False)
    )
    assert read(data, mano[0], tmp_path).views == {}


# User errors: one sentence naming the file


def _edit_dict(file: Path, edit) -> None:
    value = load_dict(file)
    edit(value)
    np.save(file, value)


def _edit_misc(data: Path, edit) -> None:
    file = data / "meta" / "misc.json"
    misc = json.loads(file.read_text())
    edit(misc)
    file.write_text(json.dumps(misc))


ERRORS = {
    "images folder missing": (
        lambda d: shutil.rmtree(d / "images" / SID / SEQ / "0"),
        "images/s05/box_grab_01/0",
        "cropped=True",
    ),
    "misc.json missing": (lambda d: (d / "meta" / "misc.json").unlink(), "meta/misc.json", "meta.zip"),
    "misc.json without the subject": (lambda d: _edit_misc(d, lambda m: m.pop(SID)), "meta/misc.json", "subject s05"),
    "misc.json without ioi_offset": (
        lambda d: _edit_misc(d, lambda m: m[SID].pop("ioi_offset")),
        "meta/misc.json",
        "ioi_offset",
    ),
    "misc.json with bad view cameras": (
        lambda d: _edit_misc(d, lambda m: m[SID].update(world2cam=m[SID]["world2cam"][:7])),
        "meta/misc.json",
        "world2cam",
    ),
    "misc.json image size disagrees": (
        lambda d: _edit_misc(d, lambda m: m[SID].update(image_size=[[2800, 2000]] * 9)),
        "images/s05/box_grab_01/0/00004.jpg",
        "2800x2000",
    ),
    "mano.npy missing": (
        lambda d: raw_file(d, "mano.npy").unlink(),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "raw_seqs.zip",
    ),
    "mano.npy not a dict": (
        lambda d: np.save(raw_file(d, "mano.npy"), np.zeros((10, 3))),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "dictionary",
    ),
    "mano.npy garbage": (
        lambda d: raw_file(d, "mano.npy").write_bytes(b"not numpy"),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "cannot be read",
    ),
    "mano.npy without left hand": (
        lambda d: _edit_dict(raw_file(d, "mano.npy"), lambda m: m.pop("left")),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "'left'",
    ),
    "mano.npy pose shape": (
        lambda d: _edit_dict(raw_file(d, "mano.npy"), lambda m: m["right"].update(pose=m["right"]["pose"][:, :44])),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "'pose' of the right hand has shape (10, 44)",
    ),
    "mano.npy shape of betas": (
        lambda d: _edit_dict(raw_file(d, "mano.npy"), lambda m: m["left"].update(shape=m["left"]["shape"][:, :9])),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "'shape' of the left hand",
    ),
    "mano.npy hands disagree on frames": (
        lambda d: _edit_dict(
            raw_file(d, "mano.npy"), lambda m: m["left"].update({k: v[:9] for k, v in m["left"].items()})
        ),
        "raw_seqs/s05/box_grab_01.mano.npy",
        "9 frames of the left hand but 10",
    ),
    "egocam missing": (
        lambda d: raw_file(d, "egocam.dist.npy").unlink(),
        "raw_seqs/s05/box_grab_01.egocam.dist.npy",
        "not found",
    ),
    "egocam without intrinsics": (
        lambda d: _edit_dict(raw_file(d, "egocam.dist.npy"), lambda e: e.pop("intrinsics")),
        "raw_seqs/s05/box_grab_01.egocam.dist.npy",
        "'intrinsics'",
    ),
    "egocam rotation shape": (
        lambda d: _edit_dict(raw_file(d, "egocam.dist.npy"), lambda e: e.update(R_k_cam_np=e["R_k_cam_np"][:, :2])),
        "raw_seqs/s05/box_grab_01.egocam.dist.npy",
        "'R_k_cam_np'",
    ),
    "egocam frame count": (
        lambda d: _edit_dict(
            raw_file(d, "egocam.dist.npy"),
            lambda e: e.update(R_k_cam_np=e["R_k_cam_np"][:9], T_k_cam_np=e["T_k_cam_np"][:9]),
        ),
        "raw_seqs/s05/box_grab_01.egocam.dist.npy",
        "9 camera poses but box_grab_01.mano.npy annotates 10",
    ),
    "image missing for a kept frame": (
        lambda d: (d / "images" / SID / SEQ / "0" / "00007.jpg").unlink(),
        "images/s05/box_grab_01/0",
        "number 00007",
    ),
    "corrupt image": (
        lambda d: (d / "images" / SID / SEQ / "0" / "00006.jpg").write_bytes(b"\xff\xd8 broken"),
        "images/s05/box_grab_01/0/00006.jpg",
        "cannot be decoded",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_name_the_file(case: str, data: Path, mano, tmp_path: Path):
    damage, file_part, detail = ERRORS[case]
    damage(data)
    with pytest.raises(Hand4DGSError) as err:
        read(data, mano[0], tmp_path)
    assert_one_sentence(str(err.value), str(data / file_part), detail)


def test_missing_mano_file(data: Path, tmp_path: Path):
    with pytest.raises(Hand4DGSError) as err:
        read(data, tmp_path / "no_mano", tmp_path)
    assert_one_sentence(str(err.value), str(tmp_path / "no_mano" / "MANO_"), "mano.is.tue.mpg.de")
    assert not (tmp_path / "cache").exists()  # said before any frame is undistorted


def test_cropped_images_missing(tmp_path: Path, mano):
    data = arctic_fixture_data_dir(
        write_arctic_fixture(tmp_path / "arctic", num_annotated=6, views=False, cropped=False)
    )
    with pytest.raises(Hand4DGSError) as err:
        read(data, mano[0], tmp_path, cropped=True)
    assert_one_sentence(str(err.value), str(data / "cropped_images" / SID / SEQ / "0"), "cropped=False")
