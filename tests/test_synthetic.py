"""Tests of the synthetic clip generator: the rasteriser, the written sequence, labels and noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tyro
from PIL import Image

from hand4dgs_ns.cli.synth import Synth, default_clip_path, ensure_default_clip
from hand4dgs_ns.data.sequence_format import read_sequence
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.open_hand import load_open_hand
from hand4dgs_ns.synthetic.clip import SynthConfig, build_scene, synthesize_clip
from hand4dgs_ns.synthetic.hand_rig import INDEX, PINKY, THUMB, articulate, build_rig, orient_hand
from hand4dgs_ns.synthetic.rasterizer import interpolate_vertex_attributes, rasterize_mesh

SMALL = dict(num_frames=12, width=96, height=72)
K_TEST = torch.tensor([[[80.0, 0.0, 32.0], [0.0, 80.0, 24.0], [0.0, 0.0, 1.0]]])


def _edge(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (b[0] - a[0]) * (p[..., 1] - a[1]) - (b[1] - a[1]) * (p[..., 0] - a[0])


def test_rasterizer_renders_a_known_triangle() -> None:
    # A slanted triangle (depth varies), so perspective-correct interpolation matters.
    verts = torch.tensor([[[-0.2, -0.15, 1.0], [0.25, -0.1, 1.5], [0.0, 0.2, 2.0]]])
    faces = torch.tensor([[0, 1, 2]])
    frags = rasterize_mesh(verts, faces, K_TEST, 64, 48)

    screen = project_points(K_TEST[0], verts[0]).numpy()
    ys, xs = np.mgrid[0:48, 0:64]
    centres = np.stack([xs + 0.5, ys + 0.5], axis=-1)
    e = [
        _edge(screen[1], screen[2], centres),
        _edge(screen[2], screen[0], centres),
        _edge(screen[0], screen[1], centres),
    ]
    area = _edge(screen[0], screen[1], screen[2])
    inside = np.all([ei * np.sign(area) > 1e-6 for ei in e], axis=0)
    border = np.any([np.abs(ei) < 1e-3 for ei in e], axis=0)
    covered = frags.covered[0].numpy()
    assert inside.sum() > 150
    assert np.array_equal(covered & ~border, inside & ~border)
    assert (frags.faces == 0).all()
    assert torch.isinf(frags.depth_map[0][~frags.covered[0]]).all()

    # Perspective-correct barycentrics put the 3-D point exactly on the pixel's ray at the depth.
    points = interpolate_vertex_attributes(frags, faces, verts)
    torch.testing.assert_close(points[:, 2], frags.depth, atol=1e-5, rtol=1e-5)
    bary = frags.barycentrics()
    torch.testing.assert_close(bary.sum(-1), torch.ones_like(frags.depth), atol=1e-5, rtol=0)
    assert (bary >= -1e-5).all()
    torch.testing.assert_close(frags.barycentrics(torch.tensor([3, 1])), bary[[3, 1]])
    pixel = torch.from_numpy(centres[covered]).float()
    torch.testing.assert_close(project_points(K_TEST[0], points), pixel, atol=1e-3, rtol=0)
    # The plane through the triangle: n . p = d holds for every interpolated point.
    n = torch.linalg.cross(verts[0, 1] - verts[0, 0], verts[0, 2] - verts[0, 0])
    torch.testing.assert_close(points @ n, (verts[0, 0] @ n).expand(points.shape[0]), atol=1e-5, rtol=0)


def test_rasterizer_depth_order_is_independent_of_face_order_and_chunking() -> None:
    near = [[-0.3, -0.3, 1.0], [0.3, -0.3, 1.0], [0.0, 0.3, 1.0]]
    far = [[-0.6, -0.1, 2.0], [0.6, -0.1, 2.0], [0.0, 0.5, 2.0]]
    verts = torch.tensor([far + near, near + far])  # two images, faces listed in both orders
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize_mesh(verts, faces, K_TEST.expand(2, 3, 3), 64, 48)
    chunked = rasterize_mesh(verts, faces, K_TEST.expand(2, 3, 3), 64, 48, max_candidates=37)
    assert torch.equal(frags.face_ids, chunked.face_ids)
    torch.testing.assert_close(frags.depth_map, chunked.depth_map)
    # Where both triangles cover a pixel, the near one (depth 1) wins in both images.
    assert (frags.face_ids[0] == 1).sum() > 50 and (frags.face_ids[0] == 0).sum() > 50
    assert torch.equal(frags.face_ids[0] == 1, frags.face_ids[1] == 0)
    torch.testing.assert_close(frags.depth_map[0, 24, 32], torch.tensor(1.0))
    torch.testing.assert_close(frags.depth_map[1, 24, 32], torch.tensor(1.0))
    # Culling keeps a triangle whose right-hand normal (v1 - v0) x (v2 - v0) faces the camera.
    tri = torch.tensor([[[0.0, 0.0, 1.0], [0.2, 0.0, 1.0], [0.0, -0.2, 1.0]]])  # normal -z: towards it
    kept = rasterize_mesh(tri, torch.tensor([[0, 1, 2]]), K_TEST, 64, 48, cull_backfaces=True)
    flipped = rasterize_mesh(tri, torch.tensor([[0, 2, 1]]), K_TEST, 64, 48, cull_backfaces=True)
    assert kept.covered.sum() > 20 and not flipped.covered.any()
    # Triangles behind the camera are not drawn.
    behind = rasterize_mesh(verts * torch.tensor([1.0, 1.0, -1.0]), faces, K_TEST.expand(2, 3, 3), 64, 48)
    assert not behind.covered.any()


@pytest.mark.parametrize("side", ["left", "right"])
def test_flexion_curls_fingers_towards_the_palm_and_spread_fans_them(side: str) -> None:
    template = load_open_hand(side)
    rig = build_rig(template)
    n, s = rig.frame[:, 2], rig.frame[:, 0]

    def tips(flex: float, spread: float, opposition: float = 0.0) -> torch.Tensor:
        pose = articulate(rig, torch.full((1, 5, 3), flex), torch.full((1, 5), spread), torch.tensor([opposition]))
        out = hand_forward(template, torch.eye(3)[None], pose, torch.zeros(1, 10), torch.zeros(1, 3))
        return out.joints[0, [4, 8, 12, 16, 20]]

    flat = tips(0.0, 0.0)
    assert torch.allclose(flat, rig.rest_joints[[4, 8, 12, 16, 20]], atol=1e-5)
    curled = tips(0.4, 0.0)
    # Every long finger's tip moves out of the palm plane on the palm side, and closer to the wrist.
    assert ((curled - flat)[1:] @ n > 0.02).all()
    assert (curled[1:].norm(dim=-1) < flat[1:].norm(dim=-1) - 0.01).all()
    spread = tips(0.0, 0.25) - flat
    assert spread[INDEX] @ s > 0.005 and spread[PINKY] @ s < -0.005  # index to the thumb side, pinky away
    # Opposition brings the thumb tip across, in front of the palm.
    opposed = tips(0.0, 0.0, opposition=1.0)
    assert (opposed[THUMB] - flat[THUMB]) @ n > 0.01 and (opposed[THUMB] - flat[THUMB]) @ s < -0.01
    # orient_hand maps the rest palm frame onto the requested one.
    f_w, n_w = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    rot = orient_hand(rig, f_w, n_w)[0]
    torch.testing.assert_close(rot @ rig.frame[:, 1], f_w[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(rot @ rig.frame[:, 2], n_w[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(rot), torch.tensor(1.0), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "clip"
    result = synthesize_clip(out, SynthConfig(seed=3, **SMALL), progress=False)
    return result, read_sequence(out, check_frames=True)


def _images(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def _hands_npz(seq) -> dict[str, np.ndarray]:
    with np.load(seq.root / "hands.npz") as data:
        return dict(data)


def test_clip_reads_back_with_every_documented_key(clip) -> None:
    result, seq = clip
    assert seq.num_frames == 12 and len(seq.mask_paths) == 12
    assert (seq.cameras.width, seq.cameras.height) == (96, 72)
    assert seq.cameras.fps == pytest.approx(30.0)
    # About 90 degrees of horizontal field of view.
    hfov = 2 * np.degrees(np.arctan(0.5 * 96 / seq.cameras.K[0, 0, 0]))
    assert 85 < hfov < 95
    assert set(_hands_npz(seq)) == {"bbox", "valid", "pseudo_joints", "pseudo_verts", "gt_joints", "gt_valid"}
    with np.load(seq.root / "cameras.npz") as data:
        assert set(data) == {"K", "c2w", "fps"}
    hands = seq.hands
    assert hands.pseudo_verts.shape[:2] == (12, 2) and hands.pseudo_verts.shape[3] == 3
    assert hands.gt_joints.shape == (12, 2, 21, 3) and hands.gt_valid.all()
    assert set(seq.views) == {"left_static", "right_static"}
    for view in seq.views.values():
        assert len(view.image_paths) == 12
        assert np.allclose(view.cameras.c2w, view.cameras.c2w[0])
        assert _images(view.image_paths).std() > 5  # a rendered room, not a blank frame
        assert view.mask_paths is not None and len(view.mask_paths) == 12
        labels = np.stack([np.asarray(Image.open(m)) for m in view.mask_paths])
        assert set(np.unique(labels)) <= {0, 1, 2, 3} and np.isin(labels, (1, 2)).any(), "the view's masks show where its hands are"
    assert _images(seq.image_paths).shape == (12, 72, 96, 3)
    assert result.valid_fraction[0] + result.valid_fraction[1] > 0


def test_head_camera_moves_smoothly_and_looks_down_at_the_hands(clip) -> None:
    _, seq = clip
    c2w = seq.cameras.c2w
    forward = c2w[:, :3, 2]
    assert (forward[:, 2] < -0.4).all()  # world z is up: looking down
    step = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=-1)
    assert (step > 0).all() and (step < 0.02).all()
    # Hands 0.25-0.7 m in front of the camera (camera-frame depth of the wrists).
    w2c = np.linalg.inv(c2w)
    wrists = seq.hands.gt_joints[:, :, 0]
    depth = np.einsum("fij,fhj->fhi", w2c[:, :3, :3], wrists) + w2c[:, None, :3, 3]
    assert (depth[..., 2] > 0.2).all() and (depth[..., 2] < 0.8).all()


def test_same_seed_gives_identical_files_and_other_seeds_differ(clip, tmp_path) -> None:
    _, seq = clip
    again = synthesize_clip(tmp_path / "again", SynthConfig(seed=3, **SMALL), progress=False).path
    files = sorted(p.relative_to(seq.root) for p in seq.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 12 * 6 + 4  # rgb, masks, two views with masks; cameras.npz x3, hands.npz
    assert all((seq.root / f).read_bytes() == (again / f).read_bytes() for f in files)

    other = read_sequence(synthesize_clip(tmp_path / "other", SynthConfig(seed=4, **SMALL), progress=False).path)
    assert not np.allclose(other.hands.gt_joints, seq.hands.gt_joints)
    assert not np.allclose(other.cameras.c2w, seq.cameras.c2w)
    assert np.abs(_images(other.image_paths).astype(int) - _images(seq.image_paths)).mean() > 10


def test_masks_agree_with_boxes_and_visibility(clip) -> None:
    _, seq = clip
    masks = _images(seq.mask_paths)
    assert set(np.unique(masks)) <= {0, 1, 2, 3}
    assert (masks == 3).any(), "forearms and sleeves are marked as occluders (label 3)"
    hands = seq.hands
    counts = np.stack([(masks == 1).sum((1, 2)), (masks == 2).sum((1, 2))], axis=1)
    assert hands.valid.any()
    assert (counts[hands.valid] >= 0.002 * 96 * 72).all()
    ys, xs = np.mgrid[0:72, 0:96]
    for f in range(seq.num_frames):
        for slot in range(2):
            x0, y0, x1, y1 = hands.bbox[f, slot]
            assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 72
            pixels = masks[f] == slot + 1
            # Every mask pixel of a hand lies in its box (pixel centres at +0.5).
            inside = (xs + 0.5 >= x0) & (xs + 0.5 <= x1) & (ys + 0.5 >= y0) & (ys + 0.5 <= y1)
            assert not (pixels & ~inside).any()
            if hands.valid[f, slot]:
                assert pixels.sum() >= 0.1 * (x1 - x0) * (y1 - y0)


def test_joints_project_inside_their_boxes(clip) -> None:
    _, seq = clip
    hands = seq.hands
    w2c = torch.from_numpy(np.linalg.inv(seq.cameras.c2w)).float()
    cam = transform_points(w2c[:, None], torch.from_numpy(hands.gt_joints))
    uv = project_points(torch.from_numpy(seq.cameras.K).float()[:, None], cam).numpy()
    on_image = (uv[..., 0] >= 0) & (uv[..., 0] <= 96) & (uv[..., 1] >= 0) & (uv[..., 1] <= 72)
    box = hands.bbox[:, :, None]
    in_box = (
        (uv[..., 0] >= box[..., 0])
        & (uv[..., 0] <= box[..., 2])
        & (uv[..., 1] >= box[..., 1])
        & (uv[..., 1] <= box[..., 3])
    )
    check = hands.valid[..., None] & on_image
    assert check.sum() > 100
    assert in_box[check].all()


def test_pseudo_labels_have_estimator_like_error(clip) -> None:
    result, seq = clip
    hands = seq.hands
    error = np.linalg.norm(hands.pseudo_joints - hands.gt_joints, axis=-1).mean(-1) * 1000.0  # (F, 2) mm
    mpjpe = error[hands.valid].mean()
    assert 15.0 < mpjpe < 40.0
    assert mpjpe == pytest.approx(result.pseudo_mpjpe_mm, abs=0.1)
    # The error is not a constant offset: it changes over frames.
    assert error[hands.valid].std() > 1.0


def test_pseudo_vertices_agree_with_pseudo_joints(clip) -> None:
    _, seq = clip
    hands = seq.hands
    # Fingertip joints are mesh vertices, so the noisy mesh carries the noisy joints exactly.
    verts, joints = hands.pseudo_verts, hands.pseudo_joints
    nearest = np.linalg.norm(verts[:, :, None] - joints[:, :, :, None], axis=-1).min(-1)  # (F, 2, 21)
    tips = [4, 8, 12, 16, 20]
    assert nearest[..., tips].max() < 1e-5
    # And the noisy mesh is not the true one.
    gt_tip_error = np.linalg.norm(joints[..., tips, :] - hands.gt_joints[..., tips, :], axis=-1)
    assert gt_tip_error.mean() > 0.005


def test_pseudo_error_is_configurable(tmp_path) -> None:
    config = SynthConfig(seed=1, num_frames=6, width=48, height=36, static_views=False, pseudo_error_mm=0.0)
    exact = read_sequence(synthesize_clip(tmp_path / "exact", config, progress=False).path)
    np.testing.assert_allclose(exact.hands.pseudo_joints, exact.hands.gt_joints, atol=1e-6)
    assert exact.views == {}


def test_hands_occlude_each_other_when_crossing(tmp_path) -> None:
    config = SynthConfig(seed=0, num_frames=150, width=64, height=48, static_views=False, supersample=1)
    result = synthesize_clip(tmp_path / "cross", config, progress=False)
    assert result.crossings, "a 5-second clip scripts a crossing"
    seq = read_sequence(result.path)
    scene = build_scene(config)
    first, last = result.crossings[0]
    frames = slice(first, last + 1)
    masks = torch.from_numpy(_images(seq.mask_paths[frames]))
    cam = transform_points(invert_rigid(scene.c2w[frames])[:, None], scene.gt_vertices[frames])
    K = scene.K.expand(masks.shape[0], 3, 3)
    # Rasterise each hand alone: where both silhouettes overlap, the mask shows the nearer hand.
    solo = [rasterize_mesh(cam[:, s].contiguous(), scene.templates[s].faces, K, 64, 48) for s in (0, 1)]
    both = solo[0].covered & solo[1].covered
    # Where both silhouettes overlap, the mask shows the nearer hand (or a forearm over both).
    shown = both & ((masks == 1) | (masks == 2))  # a forearm (label 3) over both shows neither
    assert shown.sum() > 20
    nearer = torch.where(solo[0].depth_map < solo[1].depth_map, 1, 2).to(torch.uint8)
    assert (masks[shown] == nearer[shown]).float().mean() > 0.98


def test_bad_settings_raise_user_errors(tmp_path) -> None:
    with pytest.raises(Hand4DGSError):
        synthesize_clip(tmp_path / "x", SynthConfig(num_frames=1))
    with pytest.raises(Hand4DGSError):
        synthesize_clip(tmp_path / "x", SynthConfig(width=8, height=8))
    assert not (tmp_path / "x").exists()


def test_cli_writes_a_clip_and_refuses_to_overwrite(tmp_path, capsys) -> None:
    args = [str(tmp_path / "cli"), "--frames", "4", "--width", "48", "--height", "36", "--no-static-views"]
    synth = tyro.cli(Synth, args=args)
    synth.main()
    seq = read_sequence(tmp_path / "cli")
    assert seq.num_frames == 4 and seq.views == {}
    assert "Wrote 4 frames" in capsys.readouterr().out
    with pytest.raises(Hand4DGSError):
        synth.main()
    tyro.cli(Synth, args=[*args, "--overwrite", "--seed", "5"]).main()
    assert read_sequence(tmp_path / "cli").num_frames == 4


def test_default_clip_is_cached_under_the_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path))
    path = default_clip_path()
    assert path == tmp_path / "synthetic" / "default-v2"
    synthesize_clip(path, SynthConfig(num_frames=3, width=32, height=24, static_views=False), progress=False)
    stamp = (path / "hands.npz").stat().st_mtime_ns
    assert ensure_default_clip(progress=False) == path
    assert (path / "hands.npz").stat().st_mtime_ns == stamp  # found, not synthesised again


@pytest.mark.slow
def test_default_clip_is_synthesised_on_first_use(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path))
    seq = read_sequence(ensure_default_clip(progress=False), check_frames=True)
    assert seq.num_frames == 300 and (seq.cameras.width, seq.cameras.height) == (320, 240)
    assert set(seq.views) == {"left_static", "right_static"}
