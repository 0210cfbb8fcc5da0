"""scripts/train_in_slices.sh: one ns-train run resumed from its latest checkpoint, call after call;
scripts/eval_checkpoints.sh: ns-eval on each checkpoint such a run kept."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ns_commands import BIN

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_in_slices.sh"
EVAL_SCRIPT = SCRIPT.with_name("eval_checkpoints.sh")
ARGS = [
    "--machine.device-type", "cpu", "--vis", "tensorboard", "--steps-per-eval-batch", "1000",
    "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000", "--pipeline.model.image-loss-from", "3",
    "--pipeline.model.gaussians-per-face", "1", "--pipeline.datamanager.frames-per-step", "2",
]


def slice_call(total: int, out: Path, data: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", SAVE_EVERY="2", **env_vars)
    command = ["bash", str(SCRIPT), "300", str(total), str(out), "s", "hand4dgs", "--data", str(data), *ARGS]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # a helper for long GPU runs (80 s together on a 2-core machine): run with -m slow
def test_a_run_goes_on_from_its_latest_checkpoint(tmp_path, monkeypatch):
    from conftest import write_random_sequence

    data = write_random_sequence(tmp_path / "clip", num_frames=6)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "runs" / "s" / "hand4dgs" / "run" / "nerfstudio_models"
    first = slice_call(4, tmp_path / "runs", data)
    assert first.returncode == 0, first.stdout + first.stderr
    assert [p.name for p in models.glob("*.ckpt")] == ["step-000000003.ckpt"]
    again = slice_call(4, tmp_path / "runs", data)  # nothing left to train
    assert again.returncode == 0 and "already" in again.stdout
    # A longer run named the same goes on from step 4 (what a call after a cut slice does).
    longer = slice_call(7, tmp_path / "runs", data)
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert "from step 4, 3 steps left" in longer.stdout
    assert [p.name for p in models.glob("*.ckpt")] == ["step-000000006.ckpt"]
    assert torch.load(models / "step-000000006.ckpt", weights_only=False)["step"] == 6
    log = (tmp_path / "runs" / "s.train.log").read_text()
    assert "Done loading Nerfstudio checkpoint from" in log and "step-000000003.ckpt" in log


@pytest.mark.slow  # a helper for long GPU runs (80 s together on a 2-core machine): run with -m slow
def test_keep_every_keeps_those_steps_and_the_newest(tmp_path, monkeypatch):
    from conftest import write_random_sequence

    data = write_random_sequence(tmp_path / "clip", num_frames=6)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "runs" / "s" / "hand4dgs" / "run" / "nerfstudio_models"
    done = slice_call(7, tmp_path / "runs", data, KEEP_EVERY="4")
    assert done.returncode == 0, done.stdout + done.stderr
    # Saved at steps 2, 4 and 6 (every SAVE_EVERY steps; the last step is 6): 2 goes, 4 stays as a
    # multiple of KEEP_EVERY, 6 as the newest.
    assert sorted(p.name for p in models.glob("*.ckpt")) == ["step-000000004.ckpt", "step-000000006.ckpt"]

    # Each kept checkpoint evaluated, the run folder untouched.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    config = models.parent / "config.yml"
    evals = subprocess.run(["bash", str(EVAL_SCRIPT), str(config), str(tmp_path / "evals")], capture_output=True, text=True, env=env, timeout=600)
    assert evals.returncode == 0, evals.stdout + evals.stderr
    assert "step 4: " in evals.stdout and "step 6: " in evals.stdout and "mpjpe_mm" in evals.stdout
    for step in (4, 6):
        result = json.loads((tmp_path / "evals" / f"eval_step-{step:09d}.json").read_text())
        assert result["checkpoint"].endswith(f"step-{step:09d}.ckpt")
    assert sorted(p.name for p in models.glob("*.ckpt")) == ["step-000000004.ckpt", "step-000000006.ckpt"]
    assert "load_step: null" in config.read_text()

    # read_run (infer, export, render, tto) reads the same config copies: the step each names, from the run folder.
    from hand4dgs_ns.errors import Hand4DGSError
    from hand4dgs_ns.inference.run import read_run

    assert read_run(config).checkpoint == models / "step-000000006.ckpt"
    copy = read_run(tmp_path / "evals" / "config_step-000000004.yml")
    assert copy.checkpoint.resolve() == (models / "step-000000004.ckpt").resolve() and copy.step == 4
    missing = tmp_path / "evals" / "config_step-000000002.yml"
    missing.write_text(config.read_text().replace("load_step: null", "load_step: 2"))
    with pytest.raises(Hand4DGSError, match="step-000000002.ckpt: does not exist"):
        read_run(missing)
    # A run started with a relative output_dir, read from another folder: the copies still find
    # their checkpoints (linked beside them); a copy with none beside it says so.
    relative = yaml.load(config.read_text(), Loader=yaml.Loader)
    relative.output_dir, relative.load_step = Path("runs"), 4
    (tmp_path / "evals" / "relative.yml").write_text(yaml.dump(relative))
    assert read_run(tmp_path / "evals" / "relative.yml").checkpoint.resolve() == (models / "step-000000004.ckpt").resolve()
    relative.load_step = None
    (tmp_path / "lone.yml").write_text(yaml.dump(relative))
    with pytest.raises(Hand4DGSError, match="holds no checkpoint"):
        read_run(tmp_path / "lone.yml")


def test_a_resumed_run_draws_new_frames_not_its_first_ones_again(tmp_path, monkeypatch):
    from conftest import write_random_sequence

    from hand4dgs_ns.cli.demo import setup_trainer
    from hand4dgs_ns.method_configs import hand4dgs_trainer
    from hand4dgs_ns.trainer import resume_seed_offset

    data = write_random_sequence(tmp_path / "clip", num_frames=12)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "cache"))

    def trainer(load_dir=None):
        config = hand4dgs_trainer(3)
        config.output_dir, config.experiment_name, config.timestamp = tmp_path / "runs", "r", "run"
        config.machine.device_type, config.vis, config.load_dir = "cpu", "tensorboard", load_dir
        config.pipeline.datamanager.data = data
        config.pipeline.model.gaussians_per_face = 1
        return setup_trainer(config)

    first = trainer()
    first.train()
    resumed = trainer(load_dir=first.checkpoint_dir)

    def frames(datamanager) -> list[list[int]]:
        return [datamanager.next_train(0)[1]["frame_index"].tolist() for _ in range(3)]

    drawn = frames(resumed.pipeline.datamanager)
    first.pipeline.datamanager.reseed(0)  # a fresh start's stream
    assert drawn != frames(first.pipeline.datamanager)
    first.pipeline.datamanager.reseed(resume_seed_offset(3))  # a run resumed after step 2 (its checkpoint)
    assert drawn == frames(first.pipeline.datamanager)
    # Its progress line counts to the step it ends at (3 more steps from step 3), not past 100%.
    from nerfstudio.utils import writer

    assert resumed._start_step == 3 and writer.GLOBAL_BUFFER["max_iter"] == 6
