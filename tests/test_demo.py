"""hand4dgs demo end to end (a few steps): synthesis, training, evaluation, summary, outputs, pictures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

from hand4dgs_ns.cli.infer import SHEET_ROWS
from hand4dgs_ns.inference.plots import PLOT_SIZE_PX
from hand4dgs_ns.synthetic.default_clip import DEFAULT_CLIP_CONFIG, DEFAULT_CLIP_VERSION

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end(tmp_path):
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    out = subprocess.run(
        [str(BIN / "hand4dgs"), "demo", "--device", "cpu", "--steps", "12", "--output-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ns-train hand4dgs --data" in out.stdout
    for label in ("MPJPE (mm)", "RA-MPJPE (mm)", "Acc Err", "PSNR", "SSIM", "smoothed labels (targets)"):
        assert label in out.stdout
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("eval.json")]
    results = json.loads((run_dir / "eval.json").read_text())["results"]
    assert {"mpjpe_mm", "pseudo_mpjpe_mm", "smoothed_pseudo_mpjpe_mm", "acc_err_mm", "psnr", "ssim"} <= results.keys()
    assert 15.0 < results["pseudo_mpjpe_mm"] < 40.0  # the default clip's pseudo-label error
    assert results["smoothed_pseudo_acc_err_mm"] < 0.5 * results["pseudo_acc_err_mm"]  # the targets are smoothed
    assert (tmp_path / "cache" / "synthetic" / "default-v2" / "hands.npz").is_file()

    # The pictures hand4dgs infer writes, in the run folder, and the demo says where.
    pictures = run_dir / "pictures" / DEFAULT_CLIP_VERSION
    assert f"Pictures: {pictures}" in out.stdout
    assert (pictures / "video.mp4").stat().st_size > 1000
    width, height = DEFAULT_CLIP_CONFIG.width, DEFAULT_CLIP_CONFIG.height
    for name, size in (("contact_sheet.png", (3 * width, SHEET_ROWS * height)), ("joint_error.png", PLOT_SIZE_PX)):
        image = cv2.imread(str(pictures / name))
        assert image is not None and (image.shape[1], image.shape[0]) == size, name


def test_the_printed_ns_train_command_trains_the_demo_config(tmp_path):
    import shlex

    import tyro

    from hand4dgs_ns.cli.demo import CPU_SETTINGS, demo_config, ns_train_command
    from hand4dgs_ns.method_configs import hand4dgs_trainer

    config = demo_config(tmp_path / "clip", tmp_path / "runs", "cpu", CPU_SETTINGS, CPU_SETTINGS.steps, viewer=False)
    words = shlex.split(ns_train_command(config))
    assert words[:2] == ["ns-train", "hand4dgs"]
    # ns-train reads booleans as "--flag False" (nerfstudio turns tyro's flag conversion off)
    parsed = tyro.cli(tyro.conf.FlagConversionOff[type(config)], default=hand4dgs_trainer(), args=words[2:])
    parsed.pipeline.datamanager.data, parsed.data = parsed.data, None  # what ns-train's main() does with --data
    assert parsed == config
    assert config.pipeline.model.coarse_loss_factors == (4, 16)  # the method's 8 32 at half-size renders


def test_the_per_video_method_reads_nine_frames_and_the_cpu_demo_five():
    from hand4dgs_ns.cli.demo import CPU_SETTINGS, CUDA_SETTINGS, demo_config, ns_train_command
    from hand4dgs_ns.method_configs import hand4dgs_generalized_trainer, hand4dgs_trainer

    assert hand4dgs_trainer().pipeline.model.window == 9
    assert hand4dgs_generalized_trainer().pipeline.model.window == 5  # 9: smoother there, not better drawn
    cpu = demo_config(Path("clip"), Path("runs"), "cpu", CPU_SETTINGS, CPU_SETTINGS.steps, viewer=False)
    cuda = demo_config(Path("clip"), Path("runs"), "cuda", CUDA_SETTINGS, 30000, viewer=False)
    assert cpu.pipeline.model.window == 5 and cuda.pipeline.model.window == 9
    # the CPU demo trains its crop CNN through the predicted frames only; the methods, through every frame
    assert not cpu.pipeline.model.context_gradient and cuda.pipeline.model.context_gradient
    assert hand4dgs_trainer().pipeline.model.context_gradient and hand4dgs_generalized_trainer().pipeline.model.context_gradient
    assert "--pipeline.model.window 5" in ns_train_command(cpu)
