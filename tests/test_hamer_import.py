"""HaMeR pseudo-labels: the per-frame file, HaMeR's camera maths, import (world-frame labels, masks), the runner."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hand4dgs_ns.features.cache import array_digest
from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
from hand4dgs_ns.datasets.hamer import (
    HamerFrame,
    attach_pseudo_labels,
    hamer_focal_length,
    hamer_outputs_to_frame,
    hamer_translation_to_camera,
    read_hamer_frame,
    training_boxes,
    unmirror_left,
    write_hamer_frame,
)
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.geometry.mirror import mirror_rotations
from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands import hand_forward, load_mano
from hand4dgs_ns.features.crops import crop_hands_per_image, crop_params, crop_to_image
from hand4dgs_ns.preprocess.hamer_runner import preprocess_sequence
from hand4dgs_ns.synthetic.rasterizer import rasterize_mesh

from fake_mano import write_fake_mano_dir
from hamer_fixture import make_dataset_sequence, write_hamer_fixture

MIRROR = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)


@pytest.fixture
def mano_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "mano"
    write_fake_mano_dir(folder, monkeypatch)
    return folder


@pytest.fixture
def seq(tmp_path: Path):
    return make_dataset_sequence(tmp_path / "video")


def _random_frame(rng: np.random.Generator, tokens: bool) -> HamerFrame:
    return HamerFrame(
        valid=np.array([True, False]),
        bbox_xyxy=rng.random((2, 4)).astype(np.float32),
        global_orient=rng.normal(size=(2, 3, 3)).astype(np.float32),
        hand_pose=rng.normal(size=(2, 15, 3, 3)).astype(np.float32),
        betas=rng.normal(size=(2, 10)).astype(np.float32),
        verts=rng.normal(size=(2, 778, 3)).astype(np.float32),
        kp3d=rng.normal(size=(2, 21, 3)).astype(np.float32),
        cam_t_full=np.array([[0.1, 0.2, 5.0], [0.0, 0.0, 0.0]], np.float32),
        vit_tokens=rng.normal(size=(2, 192, 1280)).astype(np.float16) if tokens else None,
    )


# ---- the per-frame file ------------------------------------------------------------------


def test_frame_round_trip(tmp_path: Path):
    frame = _random_frame(np.random.default_rng(0), tokens=True)
    file = tmp_path / "hamer" / "000007.npz"
    write_hamer_frame(file, frame)
    assert sorted(p.name for p in file.parent.iterdir()) == ["000007.npz"]  # no temporary file left
    back = read_hamer_frame(file)
    for field in dataclasses.fields(HamerFrame):
        np.testing.assert_array_equal(getattr(back, field.name), getattr(frame, field.name))
    assert back.valid.dtype == bool and back.verts.dtype == np.float32 and back.vit_tokens.dtype == np.float16
    assert read_hamer_frame(file, tokens=False).vit_tokens is None
    without = dataclasses.replace(frame, vit_tokens=None)
    write_hamer_frame(file, without)
    assert read_hamer_frame(file).vit_tokens is None


def test_write_refuses_a_bad_frame(tmp_path: Path):
    frame = dataclasses.replace(_random_frame(np.random.default_rng(0), tokens=False), verts=np.zeros((2, 700, 3)))
    file = tmp_path / "000000.npz"
    with pytest.raises(Hand4DGSError, match="'verts' has shape"):
        write_hamer_frame(file, frame)
    assert not file.exists()


def test_invalid_slots_may_hold_anything(tmp_path: Path):
    frame = _random_frame(np.random.default_rng(0), tokens=False)
    frame.verts[1] = np.nan  # slot 1 is invalid
    write_hamer_frame(tmp_path / "a.npz", frame)
    assert np.isnan(read_hamer_frame(tmp_path / "a.npz").verts[1]).all()


# ---- HaMeR's camera ------------------------------------------------------------------------


def _hamer_cam_crop_to_full(cam_bbox, box_center, box_size, img_size, focal_length):
    """hamer/utils/renderer.py ``cam_crop_to_full``, line for line, in numpy."""
    img_w, img_h = img_size[:, 0], img_size[:, 1]
    cx, cy, b = box_center[:, 0], box_center[:, 1], box_size
    w_2, h_2 = img_w / 2.0, img_h / 2.0
    bs = b * cam_bbox[:, 0] + 1e-9
    tz = 2 * focal_length / bs
    tx = (2 * (cx - w_2) / bs) + cam_bbox[:, 1]
    ty = (2 * (cy - h_2) / bs) + cam_bbox[:, 2]
    return np.stack([tx, ty, tz], axis=-1)


def _fake_outputs(rng: np.random.Generator, b: int) -> dict:
    pred_cam = np.stack([rng.uniform(0.5, 2.0, b), rng.normal(scale=0.2, size=b), rng.normal(scale=0.2, size=b)], -1)
    return {
        "pred_cam": torch.tensor(pred_cam, dtype=torch.float32),
        "pred_mano_params": {
            "global_orient": torch.randn(b, 1, 3, 3),
            "hand_pose": torch.randn(b, 15, 3, 3),
            "betas": torch.randn(b, 10),
        },
        "pred_vertices": torch.randn(b, 778, 3),
        "pred_keypoints_3d": torch.randn(b, 21, 3),
    }


def test_outputs_to_frame_follow_hamer_demo():
    rng = np.random.default_rng(0)
    b, width, height = 6, 640, 480
    outputs = _fake_outputs(rng, b)
    pred_cam_before = outputs["pred_cam"].clone()
    centre = torch.tensor(rng.uniform(50, 400, (b, 2)), dtype=torch.float32)
    size = torch.tensor(rng.uniform(60, 200, b), dtype=torch.float32)
    right = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    fields = hamer_outputs_to_frame(outputs, centre, size, right, width, height)

    # demo.py: pred_cam[:, 1] *= 2 * right - 1, focal = FOCAL_LENGTH / IMAGE_SIZE * img_size.max().
    cam = pred_cam_before.numpy().astype(np.float64)
    cam[:, 1] *= 2 * right.numpy() - 1
    img_size = np.tile([width, height], (b, 1)).astype(np.float64)
    expected = _hamer_cam_crop_to_full(cam, centre.numpy(), size.numpy(), img_size, 5000 / 256 * img_size.max())
    np.testing.assert_allclose(fields["cam_t_full"], expected, rtol=1e-6)
    torch.testing.assert_close(outputs["pred_cam"], pred_cam_before)  # inputs left alone
    np.testing.assert_array_equal(fields["global_orient"], outputs["pred_mano_params"]["global_orient"][:, 0].numpy())
    np.testing.assert_array_equal(fields["hand_pose"], outputs["pred_mano_params"]["hand_pose"].numpy())
    np.testing.assert_array_equal(fields["verts"], outputs["pred_vertices"].numpy())
    np.testing.assert_array_equal(fields["kp3d"], outputs["pred_keypoints_3d"].numpy())
    assert hamer_focal_length(width, height) == pytest.approx(5000 / 256 * 640)


@pytest.mark.parametrize("right", [True, False])
def test_full_image_translation_reproduces_the_crop_projection(right: bool):
    """Points at the hand's depth project to the same image pixel through the crop (HaMeR's
    5000-pixel focal on a 256 crop, mirrored for left hands) and through the full camera."""
    rng = np.random.default_rng(1)
    width, height = 640, 480
    outputs = _fake_outputs(rng, 1)
    centre = torch.tensor([[420.0, 170.0]])
    size = torch.tensor([150.0])
    cam_t_full = hamer_outputs_to_frame(outputs, centre, size, torch.tensor([right]), width, height)["cam_t_full"][0]
    s, tx, ty = outputs["pred_cam"][0].double().tolist()
    points = torch.tensor(rng.normal(scale=0.05, size=(10, 3)))
    points[:, 2] = 0.0
    # In the crop the network sees, with its own camera.
    tz_crop = 2 * 5000.0 / (256 * s)
    crop_px = 5000.0 * (points[:, :2] + torch.tensor([tx, ty])) / tz_crop + 128.0
    image_px = crop_to_image(crop_px[None], centre.double(), size.double(), torch.tensor([not right]), (256, 256))[0]
    # In the full image, the real (unmirrored) points.
    real = points if right else points * MIRROR
    q = real + torch.tensor(cam_t_full, dtype=torch.float64)
    full_px = hamer_focal_length(width, height) * q[:, :2] / q[:, 2:] + torch.tensor([width / 2, height / 2])
    torch.testing.assert_close(full_px, image_px, atol=1e-3, rtol=0)


def test_translation_keeps_the_centre_pixel_and_apparent_size():
    rng = np.random.default_rng(2)
    width, height = 320, 240
    f_h = hamer_focal_length(width, height)
    centre = torch.tensor(rng.normal(scale=0.03, size=(5, 3)))
    cam_t = torch.tensor(np.c_[rng.normal(scale=0.1, size=(5, 2)), rng.uniform(2, 8, 5)])
    K = torch.tensor([[300.0, 0, 140.0], [0, 270.0, 130.0], [0, 0, 1]], dtype=torch.float64).expand(5, 3, 3)
    t = hamer_translation_to_camera(cam_t, centre, K, width, height)
    a_h, a = centre + cam_t, centre + t
    px_h = f_h * a_h[:, :2] / a_h[:, 2:] + torch.tensor([width / 2, height / 2])
    px = torch.stack([300.0 * a[:, 0] / a[:, 2] + 140.0, 270.0 * a[:, 1] / a[:, 2] + 130.0], -1)
    torch.testing.assert_close(px, px_h)
    torch.testing.assert_close(a[:, 2] / a_h[:, 2], torch.full((5,), np.sqrt(300.0 * 270.0) / f_h, dtype=torch.float64))
    # HaMeR's own camera changes nothing.
    K_h = torch.tensor([[f_h, 0, width / 2], [0, f_h, height / 2], [0, 0, 1]], dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(hamer_translation_to_camera(cam_t, centre, K_h, width, height), cam_t)


def test_mirrored_rotations_negate_axis_angle_y_and_z():
    aa = torch.randn(20, 3, dtype=torch.float64)
    torch.testing.assert_close(mirror_rotations(axis_angle_to_matrix(aa)), axis_angle_to_matrix(aa * -MIRROR))


def test_unmirrored_left_hand_is_posed_by_the_mirrored_model(mano_dir: Path):
    """With a left model that is exactly the mirror of the right one (what the left-hand
    shapedirs fix gives), the unmirrored rotations pose the unmirrored vertices."""
    right = load_mano(mano_dir / "MANO_RIGHT.pkl").to(dtype=torch.float64)
    m = MIRROR
    row_sign = (m[:, None] * m[None, :]).reshape(9).repeat(15)
    col_sign = m.repeat(right.num_vertices)
    left = dataclasses.replace(
        right,
        side="left",
        v_template=right.v_template * m,
        shapedirs=right.shapedirs * m[None, :, None],
        posedirs=right.posedirs * row_sign[:, None] * col_sign[None, :],
    )
    g = torch.Generator().manual_seed(0)
    go = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64))
    pose = axis_angle_to_matrix(0.4 * torch.randn(3, 15, 3, generator=g, dtype=torch.float64))
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    zero = torch.zeros(3, 3, dtype=torch.float64)
    mirrored = hand_forward(right, go, pose, betas, zero)  # what HaMeR predicts for a left hand
    rotations = torch.stack([torch.cat([go[:, None], pose], 1), torch.cat([go[:, None], pose], 1)], dim=1)
    points = torch.stack([mirrored.vertices, mirrored.vertices], dim=1)
    verts, rots = unmirror_left(points, rotations)
    real = hand_forward(left, rots[:, 0, 0], rots[:, 0, 1:], betas, zero)
    torch.testing.assert_close(real.vertices, verts[:, 0])
    torch.testing.assert_close(verts[:, 1], mirrored.vertices)  # the right slot is untouched
    torch.testing.assert_close(rots[:, 1], rotations[:, 1])


# ---- import --------------------------------------------------------------------------------


def test_import_recovers_known_hands(seq, mano_dir: Path, tmp_path: Path):
    K = seq.cameras.K[0]
    assert abs(K[0, 2] - seq.cameras.width / 2) > 1 and abs(K[1, 2] - seq.cameras.height / 2) > 1
    assert K[0, 0] != K[1, 1] and K[0, 0] < hamer_focal_length(seq.cameras.width, seq.cameras.height) / 10
    known = write_hamer_fixture(seq, mano_dir, drop=((2, 0),))
    out = attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")

    expected_valid = seq.box_valid.copy()
    expected_valid[2, 0] = False
    np.testing.assert_array_equal(out.hands.valid, expected_valid)
    np.testing.assert_array_equal(known.valid, expected_valid)
    v = expected_valid
    assert v.sum() == 2 * seq.num_frames - 2 and v[:, 0].any() and v[:, 1].any()
    np.testing.assert_allclose(out.hands.pseudo_verts[v], known.verts_world[v], atol=2e-6)
    np.testing.assert_allclose(out.hands.pseudo_joints[v], known.joints_world[v], atol=2e-6)
    assert not out.hands.pseudo_verts[~v].any() and not out.hands.pseudo_joints[~v].any()
    assert out.hands.pseudo_verts.shape == (seq.num_frames, 2, 778, 3) and out.hands.pseudo_verts.dtype == np.float32
    np.testing.assert_array_equal(out.hands.bbox, seq.bbox)
    np.testing.assert_array_equal(out.hands.gt_joints, seq.gt_joints)
    np.testing.assert_array_equal(out.hands.gt_valid, seq.gt_valid)
    assert out.image_paths == seq.image_paths and out.cameras is seq.cameras and out.name == seq.name
    assert out.root == seq.root and out.views == seq.views
    assert [p.stem for p in out.mask_paths] == seq.frame_ids


def test_feature_boxes_match_what_training_reads(seq, mano_dir: Path, tmp_path: Path):
    """The preprocessing step caches tokens under the boxes the datamanager later looks up."""
    write_hamer_fixture(seq, mano_dir, drop=((0, 1),))
    out = attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")
    tensors = SequenceTensors.from_sequence(out)
    hamer_valid = np.stack([read_hamer_frame(seq.hamer_dir / f"{i}.npz").valid for i in seq.frame_ids])
    bbox, valid = training_boxes(seq, hamer_valid)
    assert array_digest(np.asarray(bbox, np.float64), valid) == array_digest(
        np.asarray(tensors.bbox.numpy(), np.float64), tensors.valid.numpy()
    )


def _expected_masks(known, seq, mano_dir: Path) -> np.ndarray:
    """Each known hand rasterised on its own, the nearer one kept where both cover a pixel."""
    faces = [load_mano(mano_dir / name).faces for name in ("MANO_LEFT.pkl", "MANO_RIGHT.pkl")]
    K = torch.from_numpy(np.asarray(seq.cameras.K, np.float32))
    W, H = seq.cameras.width, seq.cameras.height
    depth = []
    for slot in range(2):
        verts = torch.from_numpy(known.verts_cam[:, slot]).float()
        d = rasterize_mesh(verts, faces[slot], K, W, H).depth_map.numpy()
        d[~known.valid[:, slot]] = np.inf
        depth.append(d)
    labels = np.where(depth[0] <= depth[1], 1, 2).astype(np.uint8)
    labels[np.isinf(depth[0]) & np.isinf(depth[1])] = 0
    return labels


def test_masks_labels_cache_and_rebuild(seq, mano_dir: Path, tmp_path: Path):
    known = write_hamer_fixture(seq, mano_dir)
    cache = tmp_path / "cache"
    out = attach_pseudo_labels(seq, mano_dir, cache)
    masks = np.stack([np.asarray(Image.open(p)) for p in out.mask_paths])
    assert masks.dtype == np.uint8 and masks.shape == (seq.num_frames, seq.cameras.height, seq.cameras.width)
    assert set(np.unique(masks)) == {0, 1, 2}
    expected = _expected_masks(known, seq, mano_dir)
    assert (masks != expected).mean() < 0.005
    cols = np.arange(seq.cameras.width)[None, None, :]
    assert np.broadcast_to(cols, masks.shape)[masks == 1].mean() < np.broadcast_to(cols, masks.shape)[masks == 2].mean()
    assert not (masks[1] == 2).any()  # the right box of frame 1 is unusable: no right hand there
    assert all(p.parent == cache / seq.dataset / "drawn" / seq.name for p in out.mask_paths)

    stamps = [(p.stat().st_mtime_ns, p.stat().st_ino) for p in out.mask_paths]
    again = attach_pseudo_labels(seq, mano_dir, cache)
    assert again.mask_paths == out.mask_paths
    assert [(p.stat().st_mtime_ns, p.stat().st_ino) for p in again.mask_paths] == stamps

    # Move frame 0's left hand 3 cm to the right: its file changes, so the masks are rebuilt.
    file = seq.hamer_dir / f"{seq.frame_ids[0]}.npz"
    frame = read_hamer_frame(file)
    cam_t = frame.cam_t_full.copy()
    cam_t[0, 0] += 0.03 * cam_t[0, 2] / 0.4
    write_hamer_frame(file, dataclasses.replace(frame, cam_t_full=cam_t))
    rebuilt = attach_pseudo_labels(seq, mano_dir, cache)
    assert [(p.stat().st_mtime_ns, p.stat().st_ino) for p in rebuilt.mask_paths] != stamps
    new_mask = np.asarray(Image.open(rebuilt.mask_paths[0]))
    assert (new_mask != masks[0]).any()
    np.testing.assert_array_equal(np.asarray(Image.open(rebuilt.mask_paths[1])), masks[1])
    assert sorted(p.name for p in (cache / seq.dataset / "drawn").iterdir()) == [seq.name]  # nothing left behind


def test_refined_masks_are_the_drawn_ones_moved_onto_each_frame(seq, mano_dir: Path, tmp_path: Path):
    """With a refinement, each cached mask is the drawn one refined against its own frame, and the
    cache is rebuilt when the refinement changes."""
    from hand4dgs_ns.data.sequence_format import read_rgb
    from hand4dgs_ns.datasets.mask_refine import MaskRefinement, refine_hand_masks

    write_hamer_fixture(seq, mano_dir)
    cache = tmp_path / "cache"
    drawn = attach_pseudo_labels(seq, mano_dir, cache)
    refined = attach_pseudo_labels(seq, mano_dir, cache, MaskRefinement())
    changed = 0
    for image_path, drawn_path, refined_path in zip(seq.image_paths, drawn.mask_paths, refined.mask_paths):
        labels = np.asarray(Image.open(drawn_path))
        expected = refine_hand_masks(read_rgb(image_path), labels, MaskRefinement())
        np.testing.assert_array_equal(np.asarray(Image.open(refined_path)), expected)
        changed += int((expected != labels).any())
    assert changed > 0  # the random frames do move the hands
    stamps = [p.stat().st_mtime_ns for p in refined.mask_paths]
    drawn_stamps = [p.stat().st_mtime_ns for p in drawn.mask_paths]
    wider = attach_pseudo_labels(seq, mano_dir, cache, MaskRefinement(reach=0.8))
    assert [p.stat().st_mtime_ns for p in wider.mask_paths] != stamps
    # Drawn and refined masks have their own folders: neither kind rebuilds the other's.
    assert attach_pseudo_labels(seq, mano_dir, cache).mask_paths == drawn.mask_paths
    assert [p.stat().st_mtime_ns for p in drawn.mask_paths] == drawn_stamps



def test_an_object_in_front_of_a_hand_is_masked_as_an_occluder(seq, mano_dir: Path, tmp_path: Path):
    """A held object (here an H2O-style box between the camera and frame 0's left hand, absent
    from frame 1 on) is drawn into the masks as label 3 where it is the nearest surface."""
    from hand4dgs_ns.datasets.objects import h2o_object_track

    known = write_hamer_fixture(seq, mano_dir)
    plain = attach_pseudo_labels(seq, mano_dir, tmp_path / "plain")
    hand = known.verts_cam[0, 0].mean(axis=0)  # left hand centre, camera frame
    centre = hand * 0.6  # on the ray to the hand, nearer the camera
    half = 0.01 * centre[2] / hand[2] * 3  # a 6 cm box at the hand's distance, scaled to its own
    corners = centre + half * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    points = np.zeros((seq.num_frames, 21, 3))
    points[:, 0], points[:, 1:9] = centre, corners
    classes = np.zeros(seq.num_frames, np.int64)
    classes[0] = 5
    track = h2o_object_track(classes, points, np.asarray(seq.cameras.c2w, np.float64))
    assert track is not None and track.present.tolist() == [True] + [False] * (seq.num_frames - 1)
    with_object = attach_pseudo_labels(dataclasses.replace(seq, objects=track), mano_dir, tmp_path / "objects")
    before, after = (np.stack([np.asarray(Image.open(p)) for p in out.mask_paths]) for out in (plain, with_object))
    K = np.asarray(seq.cameras.K[0], np.float64)
    u, v = (K[:2, :2] @ (centre[:2] / centre[2]) + K[:2, 2]).astype(int)
    assert before[0, v, u] == 1 and after[0, v, u] == 3  # the box hides the hand at its centre
    assert ((after[0] == 3) & (before[0] == 1)).sum() > 20 and not (after[0] == 1)[before[0] != 1].any()
    np.testing.assert_array_equal(after[1:], before[1:])  # no object in the other frames



def test_static_views_get_masks_drawn_from_the_same_meshes(seq, mano_dir: Path, tmp_path: Path):
    """Each static view gets hand masks (for ns-eval's novel-view metrics), drawn from the
    pseudo-label meshes in that view's camera: a view filming exactly as the egocentric camera
    gets the egocentric masks."""
    from hand4dgs_ns.data.sequence_format import SequenceView

    write_hamer_fixture(seq, mano_dir)
    view = SequenceView("cam0", list(seq.image_paths), seq.cameras)
    out = attach_pseudo_labels(dataclasses.replace(seq, views={"cam0": view}), mano_dir, tmp_path / "cache")
    ego, seen = (np.stack([np.asarray(Image.open(p)) for p in paths]) for paths in (out.mask_paths, out.views["cam0"].mask_paths))
    assert {1, 2} <= set(np.unique(seen)) and (ego != seen).mean() < 1e-3
    assert all(p.parent == tmp_path / "cache" / seq.dataset / "drawn" / "views" / seq.name / "cam0" for p in out.views["cam0"].mask_paths)
    assert out.views["cam0"].image_paths == view.image_paths and out.views["cam0"].cameras is view.cameras
    # The egocentric cameras place the hands in the world: when they change, the view's masks are redrawn.
    stamps = [p.stat().st_mtime_ns for p in out.views["cam0"].mask_paths]
    c2w = np.asarray(seq.cameras.c2w).copy()
    c2w[:, 0, 3] += 0.02
    moved = dataclasses.replace(seq, cameras=dataclasses.replace(seq.cameras, c2w=c2w), views={"cam0": view})
    again = attach_pseudo_labels(moved, mano_dir, tmp_path / "cache")
    assert [p.stat().st_mtime_ns for p in again.views["cam0"].mask_paths] != stamps


# ---- errors --------------------------------------------------------------------------------


def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".")


def test_missing_folder_says_where_and_how(seq, mano_dir: Path, tmp_path: Path):
    with pytest.raises(Hand4DGSError) as err:
        attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")
    message = str(err.value)
    _one_sentence(message)
    assert str(seq.hamer_dir) in message and "hand4dgs preprocess" in message and "--hamer-checkpoint" in message
    assert "docs/formats.md section 5" in message


def test_missing_frame_file_is_named(seq, mano_dir: Path, tmp_path: Path):
    write_hamer_fixture(seq, mano_dir)
    missing = seq.hamer_dir / f"{seq.frame_ids[2]}.npz"
    missing.unlink()
    with pytest.raises(Hand4DGSError) as err:
        attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")
    message = str(err.value)
    _one_sentence(message)
    assert str(missing) in message and "hand4dgs preprocess" in message and "docs/formats.md section 5" in message


def _drop_key(file: Path) -> None:
    with np.load(file) as data:
        arrays = {k: data[k] for k in data.files if k != "verts"}
    np.savez(file, **arrays)


def _bad_shape(file: Path) -> None:
    with np.load(file) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["kp3d"] = arrays["kp3d"][:, :20]
    np.savez(file, **arrays)


def _not_finite(file: Path) -> None:
    with np.load(file) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["cam_t_full"][0, 1] = np.nan
    np.savez(file, **arrays)


def _corrupt(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:300])


@pytest.mark.parametrize(
    "damage, words",
    [
        (_drop_key, "has no 'verts'"),
        (_bad_shape, "'kp3d' has shape"),
        (_not_finite, "NaN"),
        (_corrupt, "cannot be read"),
    ],
)
def test_bad_file_is_named(seq, mano_dir: Path, tmp_path: Path, damage, words: str):
    write_hamer_fixture(seq, mano_dir)
    file = seq.hamer_dir / f"{seq.frame_ids[1]}.npz"
    damage(file)
    with pytest.raises(Hand4DGSError) as err:
        attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")
    message = str(err.value)
    _one_sentence(message)
    assert str(file) in message and words in message


def test_missing_mano_file_is_named(seq, mano_dir: Path, tmp_path: Path):
    write_hamer_fixture(seq, mano_dir)
    (mano_dir / "MANO_LEFT.pkl").unlink()
    with pytest.raises(Hand4DGSError, match="MANO_LEFT.pkl"):
        attach_pseudo_labels(seq, mano_dir, tmp_path / "cache")


# ---- the runner ----------------------------------------------------------------------------


@pytest.fixture
def no_hamer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``import hamer`` fail, whether or not HaMeR is installed."""
    monkeypatch.setitem(sys.modules, "hamer", None)


def test_preprocess_without_hamer_package(seq, tmp_path: Path, no_hamer):
    checkpoint = tmp_path / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    with pytest.raises(Hand4DGSError) as err:
        preprocess_sequence(seq, checkpoint, device="cpu", features=False)
    message = str(err.value)
    _one_sentence(message)
    assert "https://github.com/geopavlakos/hamer" in message and "install HaMeR" in message
    assert str(seq.hamer_dir) in message and "npz" in message


def test_preprocess_missing_checkpoint(seq, tmp_path: Path):
    with pytest.raises(Hand4DGSError, match="does not exist") as err:
        preprocess_sequence(seq, tmp_path / "nowhere.ckpt", device="cpu", features=False)
    assert str(tmp_path / "nowhere.ckpt") in str(err.value)


def test_preprocess_skips_finished_frames(seq, mano_dir: Path, tmp_path: Path, no_hamer):
    """With every frame's file in place, nothing runs (HaMeR is not even needed)."""
    write_hamer_fixture(seq, mano_dir)
    stamps = {p: p.stat().st_mtime_ns for p in seq.hamer_dir.iterdir()}
    checkpoint = tmp_path / "hamer.ckpt"
    checkpoint.write_bytes(b"weights")
    preprocess_sequence(seq, checkpoint, device="cpu", features=False)
    assert {p: p.stat().st_mtime_ns for p in seq.hamer_dir.iterdir()} == stamps


_FAKE_HAMER = '''
"""Stand-in for HaMeR's package (it cannot be installed here): a deterministic network with
HaMeR's output layout that records what it is given."""
from types import SimpleNamespace

import torch

CALLS = {"load": [], "inputs": []}


class _Net(torch.nn.Module):
    def forward(self, batch):
        img = batch["img"]
        CALLS["inputs"].append(img.detach().cpu().clone())
        b = img.shape[0]
        m = img.mean(dim=(1, 2, 3))
        eye = torch.eye(3)
        return {
            "pred_cam": torch.stack([1.0 + m.abs(), 0.1 * m, -0.05 * m], dim=-1),
            "pred_mano_params": {
                "global_orient": eye.expand(b, 1, 3, 3).clone(),
                "hand_pose": eye.expand(b, 15, 3, 3).clone(),
                "betas": m[:, None].expand(b, 10).clone(),
            },
            "pred_vertices": 0.01 * m[:, None, None].expand(b, 778, 3).clone(),
            "pred_keypoints_3d": 0.02 * m[:, None, None].expand(b, 21, 3).clone(),
        }


def load_hamer(checkpoint_path):
    CALLS["load"].append(checkpoint_path)
    cfg = SimpleNamespace(
        EXTRA=SimpleNamespace(FOCAL_LENGTH=5000.0),
        MODEL=SimpleNamespace(IMAGE_SIZE=256, BBOX_SHAPE=[192, 256]),
    )
    return _Net(), cfg
'''


@pytest.fixture
def fake_hamer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "site" / "hamer"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text(textwrap.dedent(_FAKE_HAMER))
    for name in [m for m in sys.modules if m == "hamer" or m.startswith("hamer.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(package.parent))
    import hamer.models

    yield hamer.models
    # Popped directly: monkeypatch.delitem would put the stand-in back at teardown.
    for name in [m for m in sys.modules if m == "hamer" or m.startswith("hamer.")]:
        sys.modules.pop(name)


def test_preprocess_runs_hamer_on_crops_and_resumes(seq, tmp_path: Path, fake_hamer):
    checkpoint = tmp_path / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    (tmp_path / "hamer_ckpts" / "model_config.yaml").write_text("{}")
    preprocess_sequence(seq, checkpoint, device="cpu", batch_size=4, features=False)
    calls = fake_hamer.CALLS
    assert calls["load"] == [str(checkpoint)]

    # The network saw HaMeR's 256 x 256 crops of the usable boxes, left hands mirrored, in frame order.
    images = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in seq.image_paths]))
    safe = np.where(seq.box_valid[..., None], seq.bbox, np.array([0, 0, 1, 1], np.float32))
    centre, size = crop_params(torch.from_numpy(safe))
    flip = torch.tensor([True, False]).expand(seq.num_frames, 2)
    crops = crop_hands_per_image(images, centre, size, flip, (256, 256))
    keep = torch.from_numpy(seq.box_valid)
    seen = torch.cat(calls["inputs"])
    torch.testing.assert_close(seen, crops[keep])

    # Each file holds its frame's hands in their slots, converted as hamer_outputs_to_frame does.
    outputs = fake_hamer._Net()({"img": crops[keep]})
    is_right = torch.tensor([False, True]).expand(seq.num_frames, 2)[keep]
    width, height = seq.cameras.width, seq.cameras.height
    expected = hamer_outputs_to_frame(outputs, centre[keep], size[keep], is_right, width, height)
    frames = [read_hamer_frame(seq.hamer_dir / f"{i}.npz") for i in seq.frame_ids]
    np.testing.assert_array_equal(np.stack([f.valid for f in frames]), seq.box_valid)
    for key, value in expected.items():
        got = np.stack([getattr(f, key) for f in frames])
        np.testing.assert_allclose(got[seq.box_valid], value, rtol=1e-5, atol=1e-6)
        assert not got[~seq.box_valid].any()
    np.testing.assert_array_equal(np.stack([f.bbox_xyxy for f in frames])[seq.box_valid], seq.bbox[seq.box_valid])

    # A second run does only what is missing.
    (seq.hamer_dir / f"{seq.frame_ids[2]}.npz").unlink()
    calls["inputs"].clear()
    preprocess_sequence(seq, checkpoint, device="cpu", batch_size=4, features=False)
    assert torch.cat(calls["inputs"]).shape[0] == int(seq.box_valid[2].sum())
    assert (seq.hamer_dir / f"{seq.frame_ids[2]}.npz").is_file()
