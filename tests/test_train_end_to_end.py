"""ns-train hand4dgs on a tiny sequence, then ns-eval, ns-render dataset and the viewer's loading path.

Checkpoints must load under torch's ``weights_only=True`` default (torch >= 2.6), which is how
nerfstudio's tools read them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from ns_commands import BIN, FAST



def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    from conftest import write_random_sequence

    root = tmp_path_factory.mktemp("e2e")
    data = write_random_sequence(root / "clip", num_frames=10, width=80, height=60, views=("side",))
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(root / "cache"), COLUMNS="200")
    # No --machine.device-type: on a machine without CUDA the method trains on the CPU by itself.
    fast = [a for a in FAST if a not in ("--machine.device-type", "cpu")]
    out = _run([str(BIN / "ns-train"), "hand4dgs", "--data", str(data), "--output-dir", str(root / "out"), *fast], env)
    if not torch.cuda.is_available():
        assert "No CUDA device here: training on the CPU" in out.stdout + out.stderr
    configs = sorted((root / "out").rglob("config.yml"))
    assert len(configs) == 1
    return configs[0], env


def test_checkpoint_holds_only_plain_data(trained):
    config, _ = trained
    ckpts = sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert ckpts, "training saved no checkpoint"
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    pipeline = state["pipeline"]
    assert any(k.startswith("_model.network.branches.0.") for k in pipeline)
    # Frame inputs (crops or tokens) are data, not weights: they never enter the checkpoint.
    assert not any("inputs" in k for k in pipeline)


def test_ns_eval_reports_image_and_pose_metrics(trained, tmp_path):
    config, env = trained
    out = tmp_path / "eval.json"
    _run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(out)], env)
    results = json.loads(out.read_text())["results"]
    for key in ("psnr", "ssim", "psnr_square", "ssim_square", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm", "pseudo_mpjpe_mm", "pseudo_ra_mpjpe_mm", "pseudo_acc_err_mm"):
        assert key in results and results[key] == results[key], key  # present and not NaN
    assert 0 < results["pseudo_mpjpe_mm"] < results["mpjpe_mm"] * 10
    # Novel views: the held-out frames seen from the clip's static view, on its hand-mask crops.
    assert results["nvs_num_images"] >= 1 and 0 < results["nvs_psnr"] < 60 and -1 <= results["nvs_ssim"] <= 1, results


def test_ns_render_dataset(trained, tmp_path):
    config, env = trained
    _run([str(BIN / "ns-render"), "dataset", "--load-config", str(config), "--output-path", str(tmp_path),
          "--split", "train", "--rendered-output-names", "rgb"], env)
    frames = sorted(tmp_path.rglob("*.jpg")) + sorted(tmp_path.rglob("*.png"))
    assert len(frames) >= 8


def test_viewer_loading_path_renders_by_time(trained, monkeypatch):
    """ns-viewer loads with eval_setup(test_mode='test') and renders cameras that carry only times."""
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.utils.eval_utils import eval_setup

    config, env = trained
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    train_cams = pipeline.datamanager.train_dataset.cameras
    images = []
    for t in (0.0, 1.0):
        cam = Cameras(
            camera_to_worlds=train_cams.camera_to_worlds[:1], fx=train_cams.fx[:1], fy=train_cams.fy[:1],
            cx=train_cams.cx[:1], cy=train_cams.cy[:1], width=train_cams.width[:1], height=train_cams.height[:1],
            times=torch.tensor([[t]]),
        )
        out = pipeline.model.get_outputs_for_camera(cam)
        assert out["rgb"].shape == (60, 80, 3) and torch.isfinite(out["rgb"]).all()
        images.append(out["rgb"])
    assert not torch.equal(images[0], images[1]), "the time slider must change the rendered frame"

    # The viewer's "Hand joints over the splats" checkbox draws both skeletons on the render.
    pipeline.model.viewer_skeletons.value = True
    try:
        drawn = pipeline.model.get_outputs_for_camera(cam)["rgb"]
    finally:
        pipeline.model.viewer_skeletons.value = False
    changed = (drawn - images[1]).abs().amax(dim=-1) > 0.1
    assert changed.sum() > 20, "the skeleton lines should change pixels"
    white = (drawn > 0.99).all(dim=-1) & changed
    assert white.any(), "the joints are drawn as white dots"


def test_checkpoints_are_whole_and_damaged_or_missing_ones_are_named(trained, tmp_path):
    """Checkpoints are written under a temporary name beside the checkpoint folder, then renamed;
    a truncated checkpoint or an empty folder is named in one sentence by ns-eval and ns-train."""
    config, env = trained
    folder = config.parent / "nerfstudio_models"
    (ckpt,) = sorted(folder.glob("step-*.ckpt"))
    assert not [p.name for p in config.parent.iterdir() if ".partial" in p.name], "no temporary left beside the run"
    saved = ckpt.read_bytes()
    data = yaml_data(config)
    try:
        ckpt.write_bytes(saved[: len(saved) // 3])  # a save killed halfway (what an in-place write leaves)
        out = subprocess.run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(tmp_path / "e.json")],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert f"{ckpt}: is not a readable checkpoint" in out.stderr, out.stderr[-2000:]
        out = subprocess.run([str(BIN / "ns-train"), "hand4dgs", "--data", data, "--output-dir", str(tmp_path / "more"),
                              "--load-dir", str(folder), *FAST], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode != 0 and "Traceback" not in out.stderr and f"{ckpt}: is not a readable checkpoint" in out.stderr, out.stderr[-2000:]
        out = subprocess.run([str(BIN / "ns-train"), "hand4dgs", "--data", data, "--output-dir", str(tmp_path / "more"),
                              "--load-dir", str(folder), "--load-step", "99", *FAST], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode != 0 and f"{folder / 'step-000000099.ckpt'}: does not exist" in out.stderr, out.stderr[-2000:]
        ckpt.unlink()
        out = subprocess.run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(tmp_path / "e.json")],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert f"{folder}: holds no checkpoint" in out.stderr, out.stderr[-2000:]
        assert not (tmp_path / "e.json").exists()
    finally:
        ckpt.write_bytes(saved)


def yaml_data(config: Path) -> str:
    """The --data a run was trained on, from its config.yml."""
    import yaml

    loaded = yaml.load(config.read_text(), Loader=yaml.Loader)
    return str(loaded.pipeline.datamanager.data)


def test_ns_eval_output_path_blocked_by_a_file_is_one_sentence(trained, tmp_path):
    config, env = trained
    (tmp_path / "a_file").write_text("")
    out = subprocess.run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(tmp_path / "a_file" / "eval.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"{tmp_path / 'a_file'}: already exists where a new file or folder is needed" in out.stderr
    out = subprocess.run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(tmp_path / "a_file" / "x" / "eval.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode != 0 and f"{tmp_path / 'a_file' / 'x'}: lies under a file, not a folder" in out.stderr, out.stderr[-2000:]


def test_ns_render_dataset_renders_at_the_frames_resolution(tmp_path):
    """Training at --image-scale 0.5 renders its batches at half size; ns-render dataset still
    renders each frame at the frame's own size, beside which it is compared."""
    from conftest import write_random_sequence
    from PIL import Image

    data = write_random_sequence(tmp_path / "clip", num_frames=4, width=80, height=60)
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    trained = _run([str(BIN / "ns-train"), "hand4dgs", "--data", str(data), "--output-dir", str(tmp_path / "out"), *FAST,
                    "--max-num-iterations", "2", "--pipeline.datamanager.image-scale", "0.5"], env)
    # Two steps end before the image loss of step 2: ns-train says so at the start.
    assert "This run ends at step 1 but its image loss starts at step 2" in " ".join(trained.stdout.split())
    (config,) = sorted((tmp_path / "out").rglob("config.yml"))
    _run([str(BIN / "ns-render"), "dataset", "--load-config", str(config), "--output-path", str(tmp_path / "render"),
          "--split", "train", "--rendered-output-names", "rgb"], env)
    frames = sorted((tmp_path / "render").rglob("*.jpg")) + sorted((tmp_path / "render").rglob("*.png"))
    assert frames and all(Image.open(f).size == (80, 60) for f in frames)


def _screenshot(url: str, path: Path) -> "np.ndarray":
    import numpy as np
    from PIL import Image

    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--use-gl=swiftshader", "--enable-unsafe-swiftshader",
         "--window-size=800,600", "--virtual-time-budget=20000", f"--screenshot={path}", url],
        capture_output=True, timeout=120, check=True,
    )
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs a browser: Debian's chromium package (apt install chromium)")
def test_browser_viewer_opens_on_the_hands_and_follows_the_time_slider(trained, tmp_path, monkeypatch):
    """nerfstudio's viewer for a trained run, loaded in headless Chromium: the 3D view shows the hands
    from the first frame's camera, and another slider time shows another frame."""
    import socket

    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.utils import writer
    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.viewer import Viewer

    config, env = trained
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    run, pipeline, _, step = eval_setup(config, test_mode="test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    viewer = Viewer(ViewerConfig(websocket_port=port, websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
                    log_filename=tmp_path / "viewer.log", datapath=tmp_path, pipeline=pipeline)
    run.logging.local_writer.enable = False
    writer.setup_local_writer(run.logging, max_iter=run.max_num_iterations)
    viewer.init_scene(train_dataset=pipeline.datamanager.train_dataset, train_state="completed",
                      eval_dataset=pipeline.datamanager.eval_dataset)
    viewer.update_scene(step=step)
    try:
        views = []
        for t in (0.0, 1.0):
            viewer.control_panel.time = t
            shot = _screenshot(f"http://127.0.0.1:{port}", tmp_path / f"viewer_{t}.png")
            views.append(shot[60:, : int(shot.shape[1] * 0.55)])  # the 3D view, left of the control panel
    finally:
        viewer.viser_server.stop()
    for view in views:
        lit = (view.min(axis=-1) > 60).mean()  # light pixels: the rendered hands (the frustums are orange, the rest black)
        # Two small hands in a wide view: about 1% of it; an empty view (the failure this guards against) has none.
        assert lit > 0.004, f"the viewer should open on the hands; {lit:.4f} of the view is lit"
    assert abs(views[0] - views[1]).mean() > 0.5, "another slider time must show another frame"


def test_render_threads_end_with_the_run():
    """A run that quits on completion first ends the viewer's render threads, so none is left
    rendering in torch as the interpreter exits (that aborts a finished run with exit 134)."""
    from types import SimpleNamespace

    from nerfstudio.viewer.render_state_machine import RenderStateMachine

    from hand4dgs_ns.trainer import stop_viewer_renders

    viewer = SimpleNamespace(ready=False)  # nerfstudio's render loop idles until the viewer is ready
    machines = {i: RenderStateMachine(viewer, 1.0, client=None) for i in range(2)}
    for machine in machines.values():
        machine.start()
    viewer.render_statemachines = machines
    stop_viewer_renders(viewer, timeout_s=5.0)
    assert not any(machine.is_alive() for machine in machines.values())
    stop_viewer_renders(None)  # no viewer: nothing to do
