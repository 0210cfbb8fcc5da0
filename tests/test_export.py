"""``hand4dgs export``: splat PLYs and meshes round trip, the command on a tiny trained run, an
exported PLY renders as the prediction does, ``ns-export gaussian-splat`` points to it, and
``hand4dgs render`` writes orbit, bullet-time and egocentric videos of the same run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh
from plyfile import PlyData

from hand4dgs_ns.export.meshes import hands_mesh, write_hands_mesh
from hand4dgs_ns.export.splats import PROPERTIES, SH_C0, Splats, read_splats_ply, write_splats_ply
from hand4dgs_ns.hands.template import load_template
from ns_commands import BIN, FAST

FRAMES = (1, 2, 3)  # --frames 1:4; the fixture's right hand is missing in frame 1
EXPORT_SENTENCE = "run `hand4dgs export --load-config"


def _run(args: list, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=600)
    if ok:
        assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _random_splats(n: int, rng: np.random.Generator, absent: slice) -> Splats:
    opacities = rng.uniform(0.01, 0.99, n)
    opacities[absent] = 0.0  # an absent hand's Gaussians
    return Splats(
        means=rng.normal(scale=0.1, size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        scales=rng.uniform(1e-4, 2e-2, (n, 3)).astype(np.float32),
        opacities=opacities.astype(np.float32),
        colors=rng.uniform(0, 1, (n, 3)).astype(np.float32),
    )


def test_splat_ply_round_trip_leaves_out_absent_hands(tmp_path):
    splats = _random_splats(40, np.random.default_rng(0), absent=slice(20, None))
    path = tmp_path / "frame.ply"
    write_splats_ply(path, splats)

    ply = PlyData.read(str(path))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    vertex = ply["vertex"]
    assert vertex.count == 20
    assert [p.name for p in vertex.properties] == list(PROPERTIES)
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in PROPERTIES)
    kept = slice(0, 20)

    def column(*names: str) -> np.ndarray:
        return np.stack([vertex[n].astype(np.float64) for n in names], axis=1)

    np.testing.assert_allclose(column("x", "y", "z"), splats.means[kept], rtol=0, atol=0)
    assert not column("nx", "ny", "nz").any()
    np.testing.assert_allclose(column("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5, splats.colors[kept], atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-vertex["opacity"].astype(np.float64))), splats.opacities[kept], atol=1e-6)
    np.testing.assert_allclose(np.exp(column("scale_0", "scale_1", "scale_2")), splats.scales[kept], rtol=1e-6)
    quats = column("rot_0", "rot_1", "rot_2", "rot_3")
    unit = splats.quats[kept] / np.linalg.norm(splats.quats[kept], axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(quats, unit, atol=1e-6)  # wxyz kept, not flipped to xyzw

    back = read_splats_ply(path)  # the reader is the writer's inverse
    for name in ("means", "scales", "opacities", "colors"):
        np.testing.assert_allclose(getattr(back, name), getattr(splats, name)[kept], rtol=1e-5, atol=1e-6, err_msg=name)


def test_splat_ply_clamps_opacity_before_the_logit(tmp_path):
    splats = _random_splats(3, np.random.default_rng(1), absent=slice(0, 0))
    splats = Splats(splats.means, splats.quats, splats.scales, np.array([1e-9, 0.5, 1.0], np.float32), splats.colors)
    write_splats_ply(tmp_path / "f.ply", splats)
    logits = PlyData.read(str(tmp_path / "f.ply"))["vertex"]["opacity"]
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(logits, [np.log(1e-6 / (1 - 1e-6)), 0.0, np.log((1 - 1e-6) / 1e-6)], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("mesh_format", ["ply", "obj"])
def test_hand_meshes_round_trip_through_trimesh(tmp_path, mesh_format):
    templates = [load_template("open", side) for side in ("left", "right")]
    faces = [t.faces.numpy() for t in templates]
    vertices = np.stack([t.v_template.numpy() for t in templates]) + np.array([[[-0.1, 0, 0.4]], [[0.1, 0, 0.4]]])
    path = tmp_path / f"frame.{mesh_format}"
    write_hands_mesh(path, hands_mesh(vertices.astype(np.float32), faces), mesh_format)

    mesh = trimesh.load(path, process=False, force="mesh")
    v = templates[0].num_vertices
    assert mesh.vertices.shape == (2 * v, 3)
    np.testing.assert_allclose(mesh.vertices, vertices.reshape(-1, 3), atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, np.concatenate([faces[0], faces[1] + v]))


# ---- the command on a tiny trained run -----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, Path]:
    from conftest import write_random_sequence

    root = tmp_path_factory.mktemp("export")
    data = write_random_sequence(root / "clip", num_frames=6, width=80, height=60)
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(root / "cache"), COLUMNS="200")
    _run([BIN / "ns-train", "hand4dgs", "--data", data, "--output-dir", root / "out", *FAST], env)
    (config,) = sorted((root / "out").rglob("config.yml"))
    return config, env, data


def test_export_writes_splats_meshes_and_hands_per_frame(trained, tmp_path, monkeypatch):
    config, env, data = trained
    out = tmp_path / "export"
    result = _run([BIN / "hand4dgs", "export", "--load-config", config, "--output-dir", out, "--frames", "1:4", "--device", "cpu"], env)
    folder = out / "clip"  # --data defaults to the run's training data
    assert str(folder) in result.stdout and "ms per frame" in result.stdout, result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["clip"], "nothing partial may be left"
    assert sorted(p.name for p in folder.iterdir()) == ["hands.npz", "meshes", "preview.png", "splats"]
    preview = cv2.imread(str(folder / "preview.png"))
    assert preview.shape == (60, 160, 3), "frame 1 | its splat PLY rendered, side by side"
    assert preview[:, 80:].max() > 10, "the read-back PLY's render should show the hand"
    names = [f"frame_{f:06d}.ply" for f in FRAMES]
    assert sorted(p.name for p in (folder / "splats").iterdir()) == names
    assert sorted(p.name for p in (folder / "meshes").iterdir()) == names

    hands = np.load(folder / "hands.npz")
    assert hands["joints_world"].shape == (3, 2, 21, 3) and list(hands["frames"]) == list(FRAMES)
    assert not hands["valid"][0, 1] and hands["valid"][1:].all()
    v = hands["vertices_world"].shape[2]
    counts = []
    for i, f in enumerate(FRAMES):
        mesh = trimesh.load(folder / "meshes" / f"frame_{f:06d}.ply", process=False)
        assert mesh.vertices.shape == (2 * v, 3)
        np.testing.assert_allclose(mesh.vertices, hands["vertices_world"][i].reshape(-1, 3), atol=1e-6)
        counts.append(PlyData.read(str(folder / "splats" / f"frame_{f:06d}.ply"))["vertex"].count)
    assert counts[1] == counts[2] == 2 * counts[0], "frame 1's absent right hand must be left out"

    # An exported PLY renders as the prediction itself does, from the frame's ego camera.
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    (predicted, from_file), (big_predicted, big_from_file) = _renders(config, data, folder / "splats" / "frame_000002.ply", 2, (1, 4))
    assert predicted.amax() > 0.05, "the prediction should show the hands"
    torch.testing.assert_close(from_file, predicted, atol=2e-4, rtol=0)
    _write_png(Path("/tmp/export_check.png"), torch.cat([big_predicted, big_from_file, (big_from_file - big_predicted).abs() * 10], dim=1))


def test_export_refuses_a_bad_frame_range_in_one_sentence(trained, tmp_path, monkeypatch):
    from hand4dgs_ns.cli.export import Export
    from hand4dgs_ns.errors import Hand4DGSError

    config, env, _ = trained
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    out = tmp_path / "o"
    for frames, expected in (("1-4", "is not a slice"), ("4:4", "selects no frame"), ("-2:1", "selects no frame"), ("::0", "step of 0"), ("::-1", "step of -1")):
        with pytest.raises(Hand4DGSError, match=expected) as err:
            Export(load_config=config, output_dir=out, frames=frames).main()
        assert str(err.value).count(". ") == 0 and str(err.value).endswith("."), err.value
    assert not out.exists()


def _mp4_frames(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]


def test_render_orbit_bullet_time_and_ego_videos(trained, tmp_path):
    """hand4dgs render: the camera paths ns-render cannot make for a video model."""
    config, env, _ = trained
    base = [BIN / "hand4dgs", "render", "--load-config", config, "--device", "cpu", "--fps", "10"]
    orbit, bullet, ego = tmp_path / "orbit.mp4", tmp_path / "bullet.mp4", tmp_path / "ego.mp4"
    out = _run([*base, "--output", orbit, "--path", "orbit", "--frame", "2", "--seconds", "0.8"], env)
    assert str(orbit) in out.stdout
    frames = _mp4_frames(orbit)
    assert len(frames) == 8 and frames[0].shape == (60, 80, 3)
    assert all(f.max() > 20 for f in frames), "every view of the orbit should show the hands"
    assert np.abs(frames[0].astype(int) - frames[4].astype(int)).mean() > 0.5, "half a turn later the view differs"

    _run([*base, "--output", bullet, "--path", "bullet-time", "--frames", "0:6", "--degrees", "90"], env)
    assert len(_mp4_frames(bullet)) == 6

    _run([*base, "--output", ego, "--path", "ego", "--frames", "1:5", "--scale", "2"], env)
    ego_frames = _mp4_frames(ego)
    assert len(ego_frames) == 4 and ego_frames[0].shape == (120, 160, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bullet.mp4", "ego.mp4", "orbit.mp4"], "no temporary file left"

    refused = _run([*base, "--output", orbit, "--path", "orbit"], env, ok=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr and "Traceback" not in refused.stderr
    refused = _run([*base, "--output", tmp_path / "x.mp4", "--frame", "99"], env, ok=False)
    assert refused.returncode == 1 and "--frame 99 is outside" in refused.stderr and not (tmp_path / "x.mp4").exists()


def test_ns_export_gaussian_splat_points_to_hand4dgs_export(trained, tmp_path):
    config, env, _ = trained
    args = ["gaussian-splat", "--load-config", config, "--output-dir", tmp_path / "splat"]
    result = _run([BIN / "ns-export", *args], env, ok=False)
    if "import open3d" in result.stderr and "ImportError" in result.stderr:
        # nerfstudio's exporter imports open3d first, which needs the system's libusb-1.0
        # (apt-get install libusb-1.0-0); the gaussian-splat export never uses it.
        stub = "import sys, types; sys.modules['open3d'] = types.ModuleType('open3d'); from nerfstudio.scripts.exporter import entrypoint; "
        result = _run([sys.executable, "-c", stub + "sys.argv[0] = 'ns-export'; entrypoint()", *args], env, ok=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(config) in last and EXPORT_SENTENCE in last, result.stderr[-3000:]


_FAKE_EXPORTER = """
class ExportGaussianSplat:
    load_config = "run/config.yml"
    output_dir = "splat"

    def main(self, pipeline):
        assert isinstance(pipeline.model, int)
"""


@pytest.mark.parametrize(
    ("filename", "model_module", "error", "caught"),
    [
        ("site-packages/nerfstudio/scripts/exporter.py", "hand4dgs_ns.model.hand4dgs", AssertionError, True),
        ("site-packages/nerfstudio/scripts/exporter.py", "nerfstudio.models.nerfacto", AssertionError, False),  # not our run
        ("site-packages/nerfstudio/scripts/render.py", "hand4dgs_ns.model.hand4dgs", AssertionError, False),  # not the exporter
        ("site-packages/nerfstudio/scripts/exporter.py", "hand4dgs_ns.model.hand4dgs", ValueError, False),  # not its assertion
    ],
)
def test_excepthook_recognises_only_ns_export_splat_of_a_hand_run(filename, model_module, error, caught, capsys):
    """The excepthook prints the sentence for that one failure and hands every other error to the usual hook."""
    from types import SimpleNamespace

    from hand4dgs_ns.errors import _print_user_errors

    scope: dict = {}
    exec(compile(_FAKE_EXPORTER, filename, "exec"), scope)
    pipeline = SimpleNamespace(model=type("Model", (), {"__module__": model_module})())
    try:
        if error is AssertionError:
            scope["ExportGaussianSplat"]().main(pipeline)
        raise error("other")
    except error as exc:
        passed_on = []
        _print_user_errors(type(exc), exc, exc.__traceback__, _fallback=lambda *args: passed_on.append(args))
    stderr = capsys.readouterr().err
    assert (EXPORT_SENTENCE in stderr) == caught and bool(passed_on) != caught, stderr
    if caught:
        assert stderr.startswith("error: run/config.yml: is a hand4dgs run") and "--output-dir splat`" in stderr


def _renders(config: Path, data: Path, ply: Path, frame: int, zooms: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per zoom of the ego camera of ``frame``: the run's prediction rendered from it, and the exported PLY rendered the same way."""
    from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
    from hand4dgs_ns.datasets.detect import DatasetOptions, load_sequences
    from hand4dgs_ns.features.staging import PinnedStager
    from hand4dgs_ns.features.video_inputs import build_frame_inputs
    from hand4dgs_ns.geometry.cameras import invert_rigid
    from hand4dgs_ns.inference.predict import predict_batch
    from hand4dgs_ns.inference.run import load_network, read_run
    from hand4dgs_ns.render import rasterize

    run = read_run(config)
    (video,) = [SequenceTensors.from_sequence(s) for s in load_sequences(data, DatasetOptions())]
    inputs = build_frame_inputs([video], run.config.pipeline.datamanager.backbone)
    prediction, c2w = predict_batch(load_network(run, inputs, "cpu"), inputs, 0, torch.tensor([frame]), PinnedStager("cpu"), True)
    splats = read_splats_ply(ply)
    names = ("means", "quats", "scales", "opacities", "colors")
    gaussians = {"predicted": [getattr(prediction, n) for n in names], "file": [torch.from_numpy(getattr(splats, n))[None] for n in names]}
    renders = []
    for zoom in zooms:
        K = video.K[frame : frame + 1].clone()
        K[:, :2] *= zoom  # the same view, zoom times the pixels
        args = (invert_rigid(c2w), K, video.width * zoom, video.height * zoom)
        renders.append(tuple(rasterize(*g, *args, backend="torch").rgb[0] for g in gaussians.values()))
    return renders


def _write_png(path: Path, rgb: torch.Tensor) -> None:
    image = (rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_export_of_a_run_with_one_shape_per_video(trained, tmp_path):
    """``video_shape: true`` in a copy of the run's config.yml (beside it, where the checkpoint is
    found): every frame of a hand is exported with one shape, the mean of its per-frame shapes."""
    config, env, _ = trained
    text = config.read_text()
    assert "    video_shape: false\n" in text
    copy = config.with_name("video_shape.yml")
    copy.write_text(text.replace("    video_shape: false\n", "    video_shape: true\n"))
    shapes = {}
    for name, cfg in (("per_frame", config), ("per_video", copy)):
        _run([BIN / "hand4dgs", "export", "--load-config", cfg, "--output-dir", tmp_path / name, "--device", "cpu"], env)
        hands = np.load(tmp_path / name / "clip" / "hands.npz")
        shapes[name] = (hands["betas"], hands["valid"])
    betas, valid = shapes["per_frame"]
    fixed, _ = shapes["per_video"]
    for slot in (0, 1):
        own = betas[valid[:, slot], slot]
        assert np.abs(own - own[:1]).max() > 1e-6, "the trained network's frames should differ in shape"
        np.testing.assert_allclose(fixed[valid[:, slot], slot], np.broadcast_to(own.mean(axis=0), own.shape), atol=1e-5)
