"""hand4dgs-generalized on a tiny set of videos (train/test from splits.json), ns-eval's per-video
metrics, and ``hand4dgs infer`` on a clip the run never saw, with weights from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from ns_commands import BIN, FAST


def _run(args: list[str], env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=600)
    if ok:
        assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_random_sequence

    from hand4dgs_ns.synthetic.clip import SynthConfig
    from hand4dgs_ns.synthetic.clip_set import synthesize_clip_set

    root = tmp_path_factory.mktemp("generalized")
    data = root / "set"  # a tiny synth-set: two training and two held-out synthetic videos
    tiny = SynthConfig(num_frames=6, width=80, height=60, supersample=1, static_views=False, seed=3)
    synthesize_clip_set(data, num_train=2, num_test=2, config=tiny, progress=False)
    unseen = write_random_sequence(root / "unseen" / "new_clip", num_frames=7, width=80, height=60, seed=9)
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(root / "cache"), COLUMNS="200")
    _run([BIN / "ns-train", "hand4dgs-generalized", "--data", data, "--output-dir", root / "out", *FAST, "--pipeline.datamanager.crop-size", "128", "96"], env)  # the defaults (pixel colours too), larger crops
    (config,) = sorted((root / "out").rglob("config.yml"))
    return config, env, unseen, data


def test_training_never_sees_the_held_out_videos(trained, monkeypatch):
    from nerfstudio.utils.eval_utils import eval_setup

    config, env, _, _ = trained
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    names = [s.name for s in pipeline.datamanager.hands.sequences]
    train = {names[s] for s in pipeline.datamanager._train}
    held_out = {names[s] for s in pipeline.datamanager._eval}
    assert train == {"train_000", "train_001"} and held_out == {"test_000", "test_001"}


def test_the_generalised_default_trains_a_matte(trained):
    from hand4dgs_ns.inference.run import network_weights, read_run

    config, _, _, _ = trained
    weights = network_weights(read_run(config))
    assert weights["matte.out.weight"].abs().max() > 0  # zero-initialised: moved by its loss


def test_resuming_with_other_network_options_is_refused_in_one_sentence(trained, tmp_path):
    config, env, _, data = trained
    checkpoints = config.parent / "nerfstudio_models"
    result = _run([BIN / "ns-train", "hand4dgs-generalized", "--data", data, "--output-dir", tmp_path / "out", *FAST,
                   "--pipeline.datamanager.crop-size", "128", "96", "--load-dir", checkpoints, "--pipeline.model.matte", "False"], env, ok=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(checkpoints) in result.stderr and "--pipeline.model.matte True" in result.stderr, result.stderr[-3000:]
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_ns_eval_reports_each_held_out_video_and_the_mean(trained, tmp_path):
    config, env, _, _ = trained
    out = tmp_path / "eval.json"
    _run([BIN / "ns-eval", "--load-config", config, "--output-path", out], env)
    results = json.loads(out.read_text())["results"]
    for video in ("test_000", "test_001"):
        for key in ("psnr", "ssim", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm", "pseudo_mpjpe_mm"):
            assert np.isfinite(results[f"{video}/{key}"]), (video, key)
    mean = (results["test_000/mpjpe_mm"] + results["test_001/mpjpe_mm"]) / 2
    assert results["mpjpe_mm"] == pytest.approx(mean)


def test_infer_reconstructs_an_unseen_clip_with_the_trained_weights(trained, tmp_path):
    from hand4dgs_ns.datasets.detect import DatasetOptions, load_sequences
    from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
    from hand4dgs_ns.features.staging import PinnedStager
    from hand4dgs_ns.features.video_inputs import build_frame_inputs
    from hand4dgs_ns.inference.run import load_network, read_run
    from hand4dgs_ns.network.hand_network import HandNetwork

    config, env, unseen, _ = trained
    out = tmp_path / "infer"
    _run([BIN / "hand4dgs", "infer", "--load-config", config, "--data", unseen, "--output-dir", out, "--device", "cpu", "--batch-frames", "3"], env)
    folder = out / "new_clip"
    assert sorted(p.name for p in folder.iterdir()) == ["contact_sheet.png", "hands.npz", "joint_error.png", "metrics.json", "video.mp4"]
    assert not list(out.glob(".*partial*"))
    hands = np.load(folder / "hands.npz")
    assert hands["joints_world"].shape == (7, 2, 21, 3) and hands["joints_camera"].shape == (7, 2, 21, 3)
    assert hands["valid"].shape == (7, 2) and not hands["valid"][1, 1]  # the fixture's right hand is missing in frame 1
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm", "pseudo_mpjpe_mm", "psnr", "ssim", "fps_cached_features", "fps_with_features"):
        assert np.isfinite(metrics[key]), key
    assert (folder / "video.mp4").stat().st_size > 1000

    # The same joints from the checkpoint's network run directly; a fresh network predicts others.
    run = read_run(config)
    video = [SequenceTensors.from_sequence(s) for s in load_sequences(unseen, DatasetOptions())]
    inputs = build_frame_inputs(video, "small-cnn", cache_dir=tmp_path / "features", crop_size=(128, 96))
    frames = torch.arange(7)
    model_config = run.config.pipeline.model
    x = inputs.network_inputs(torch.zeros_like(frames), frames, model_config.window // 2, PinnedStager("cpu"), with_estimates=model_config.estimate_input)
    with torch.no_grad():
        loaded = load_network(run, inputs, "cpu")(x, with_gaussians=False).joints.numpy()
        fresh = HandNetwork(run.config.pipeline.model, inputs.spec).eval()(x, with_gaussians=False).joints.numpy()
    np.testing.assert_allclose(hands["joints_world"], loaded, atol=1e-5)
    assert np.abs(fresh - loaded).max() > 1e-4


def test_infer_refuses_bad_runs_in_one_sentence(trained, tmp_path):
    config, env, unseen, _ = trained
    cases = {
        "does not exist": tmp_path / "missing" / "config.yml",
    }
    other = tmp_path / "other" / "config.yml"
    other.parent.mkdir()
    other.write_text(config.read_text().replace("method_name: hand4dgs-generalized", "method_name: splatfacto"))
    cases["method 'splatfacto'"] = other
    empty = tmp_path / "empty" / "config.yml"
    empty.parent.mkdir()
    empty.write_text(config.read_text())
    cases["holds no checkpoint"] = empty
    for expected, path in cases.items():
        result = _run([BIN / "hand4dgs", "infer", "--load-config", path, "--data", unseen, "--output-dir", tmp_path / "o"], env, ok=False)
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "o").exists()


def test_tto_fine_tunes_appearance_only_and_writes_a_loadable_run(trained, tmp_path):
    from hand4dgs_ns.inference.run import network_weights, read_run
    from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

    config, env, unseen, _ = trained
    result = _run([BIN / "hand4dgs", "tto", "--load-config", config, "--data", unseen, "--steps", "3", "--device", "cpu",
                   "--output-dir", tmp_path / "tto", "--frames-per-step", "2", "--eval-interval", "3", "--no-free-pose"], env)
    assert "Test-time optimisation: 3 steps" in result.stdout and "PSNR" in result.stdout
    (tto_config,) = sorted((tmp_path / "tto").rglob("config.yml"))
    tto_run = read_run(tto_config)
    assert tto_run.config.method_name == "hand4dgs-generalized" and tto_run.step == 2  # its own counter: steps 0, 1, 2
    summary = json.loads((tto_config.parent / "tto.json").read_text())
    assert np.isfinite(summary["before"]["psnr"]) and np.isfinite(summary["after"]["psnr"])

    before, after = network_weights(read_run(config)), network_weights(tto_run)
    network = HandNetwork(tto_run.config.pipeline.model, InputSpec("crops", (3, 64, 48)))
    names = {id(p): name for name, p in network.named_parameters()}
    pose = [names[id(p)] for p in network.pose_parameters()]
    # The matte trains from its own loss in every step: the decoders must be fine-tuned besides.
    appearance = [names[id(p)] for p in network.appearance_parameters() if not names[id(p)].startswith("matte.")]
    assert all(torch.equal(before[n], after[n]) for n in pose), "the pose path must stay as the network gives it"
    assert any(not torch.equal(before[n], after[n]) for n in appearance), "the appearance must be fine-tuned"

    # The new run loads like any other: ns-eval and hand4dgs infer.
    _run([BIN / "ns-eval", "--load-config", tto_config, "--output-path", tmp_path / "eval.json"], env)
    assert np.isfinite(json.loads((tmp_path / "eval.json").read_text())["results"]["psnr"])
    _run([BIN / "hand4dgs", "infer", "--load-config", tto_config, "--data", unseen, "--output-dir", tmp_path / "infer",
          "--device", "cpu", "--no-video"], env)
    assert (tmp_path / "infer" / "new_clip" / "hands.npz").is_file()


def test_tto_fine_tunes_the_pose_path_by_default(trained, tmp_path, monkeypatch):
    from hand4dgs_ns.cli.tto import TTO
    from hand4dgs_ns.inference.run import network_weights, read_run
    from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

    config, env, unseen, _ = trained
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", env["HAND4DGS_CACHE_DIR"])
    TTO(load_config=config, data=unseen, steps=2, device="cpu", output_dir=tmp_path / "tto", frames_per_step=2, eval_interval=3).main()
    (tto_config,) = sorted((tmp_path / "tto").rglob("config.yml"))
    tto_run = read_run(tto_config)
    assert json.loads((tto_config.parent / "tto.json").read_text())["free_pose"] is True
    before, after = network_weights(read_run(config)), network_weights(tto_run)
    network = HandNetwork(tto_run.config.pipeline.model, InputSpec("crops", (3, 64, 48)))
    names = {id(p): name for name, p in network.named_parameters()}
    assert any(not torch.equal(before[names[id(p)]], after[names[id(p)]]) for p in network.pose_parameters())
