"""The Hand-4DGS model on a tiny sequence: batching invariance, outputs, losses."""

from __future__ import annotations

import pytest
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.eval.metrics import root_aligned
from hand4dgs_ns.method_configs import hand4dgs_trainer
from hand4dgs_ns.model.losses import bone_length_loss, point_loss


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from conftest import tiny_pipeline

    mp = pytest.MonkeyPatch()
    yield tiny_pipeline(tmp_path_factory.mktemp("model"), mp, num_frames=9)
    mp.undo()


def test_a_frame_is_predicted_the_same_alone_or_in_a_batch(pipeline):
    model = pipeline.model
    model.eval()
    with torch.no_grad():
        frames = torch.arange(9)
        batch = model.predict_hands(torch.zeros_like(frames), frames)
        for f in (0, 4, 8):
            alone = model.predict_hands(torch.zeros(1, dtype=torch.long), torch.tensor([f]))
            torch.testing.assert_close(alone.joints[0], batch.joints[f])
            torch.testing.assert_close(alone.colors[0], batch.colors[f])


def test_outputs_and_losses_in_both_phases(pipeline):
    model = pipeline.model
    model.train()
    camera, batch = pipeline.datamanager.next_train(0)
    model.step = 0  # vertex-only phase: nothing is rendered
    out = model.get_outputs(camera)
    assert "rgb" not in out and out["joints"].shape == (len(camera), 2, 21, 3)
    assert set(model.get_loss_dict(out, batch)) == {"vertex_loss"}
    model.step = model.config.image_loss_from
    out = model.get_outputs(camera)
    h, w = int(camera.height[0]), int(camera.width[0])
    assert out["rgb"].shape == (len(camera), h, w, 3)
    losses = model.get_loss_dict(out, batch)
    assert {"vertex_loss", "image_loss", "scale_loss", "opacity_loss"} <= losses.keys()
    sum(losses.values()).backward()
    grads = [p.grad for p in model.network.branches[0].color_mlp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _training_step_at(pipeline, step: int):
    """The model in training at ``step``, one training batch and the model's outputs for it."""
    model = pipeline.model
    model.train()
    camera, batch = pipeline.datamanager.next_train(0)
    model.step = step
    return model, camera, batch, model.get_outputs(camera)


def test_wrist_relative_vertex_term_adds_to_the_vertex_loss(pipeline, monkeypatch):
    model, _, batch, out = _training_step_at(pipeline, 0)
    monkeypatch.setattr(model.config, "relative_vertex_weight", 0.0)
    placed = model.get_loss_dict(out, batch)["vertex_loss"]
    monkeypatch.setattr(model.config, "relative_vertex_weight", 1.0)
    both = model.get_loss_dict(out, batch)["vertex_loss"]
    # This clip's pseudo-labels are in another topology, so the joints are supervised: the added
    # term is the wrist-relative joints' loss, at the vertex loss's weight.
    relative = point_loss(root_aligned(out["joints"]), root_aligned(batch["pseudo_joints"]), batch["valid"])
    assert float(relative) > 0
    torch.testing.assert_close(both, placed + model.config.vertex_loss_weight * relative)  # a difference would cancel


def test_bone_loss_follows_the_vertex_weight(pipeline, monkeypatch):
    model, camera, batch, out = _training_step_at(pipeline, 0)
    assert "bone_loss" not in model.get_loss_dict(out, batch)
    monkeypatch.setattr(model.config, "bone_loss_weight", 2.0)
    bones = bone_length_loss(out["joints"], batch["pseudo_joints"], batch["valid"])
    assert float(bones) > 0
    torch.testing.assert_close(model.get_loss_dict(out, batch)["bone_loss"], 2.0 * model.config.vertex_loss_weight * bones)
    model.step = model.schedule.image_start + 1  # the vertex weight has begun to fall
    weight = model.schedule.vertex_weight(model.step)
    assert 0 < weight < 1
    out = model.get_outputs(camera)
    bones = bone_length_loss(out["joints"], batch["pseudo_joints"], batch["valid"])
    torch.testing.assert_close(model.get_loss_dict(out, batch)["bone_loss"], 2.0 * weight * model.config.vertex_loss_weight * bones)


def test_silhouette_smoothness_and_coarse_losses_reach_the_pose(pipeline, monkeypatch):
    model = pipeline.model
    model.train()
    monkeypatch.setattr(model.config, "silhouette_loss_weight", 1.0)
    monkeypatch.setattr(model.config, "smooth_loss_weight", 1000.0)
    monkeypatch.setattr(model.config, "coarse_loss_factors", (4, 16))
    camera, batch = pipeline.datamanager.next_train(0)
    model.step = model.config.image_loss_from
    out = model.get_outputs(camera)
    assert out["neighbour_joints"].shape == (2, len(camera), 2, 21, 3)
    frames = camera.metadata["frame_index"].reshape(-1)
    ends = (frames == 0) | (frames == 8)
    assert not out["neighbours_valid"][ends].any()  # no neighbour pair at a video's ends
    losses = model.get_loss_dict(out, batch)
    for name in ("silhouette_loss", "smooth_loss", "coarse_loss"):
        model.zero_grad()
        losses = model.get_loss_dict(model.get_outputs(camera), batch)
        losses[name].backward()
        grads = [p.grad for p in model.network.pose_parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), name



def test_training_metrics_only_on_logging_steps(pipeline):
    """nerfstudio logs training metrics every steps_per_log steps: the model computes them only then."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    model = pipeline.model
    trainer = type("Trainer", (), {"config": hand4dgs_trainer(100)})()
    trainer.config.logging.steps_per_log = 5
    model.get_training_callbacks(TrainingCallbackAttributes(None, None, pipeline, trainer))
    camera, batch = pipeline.datamanager.next_train(0)
    model.train()
    logged = []
    for step in range(11):
        model.step = step
        out = model.get_outputs(camera)
        if model.get_metrics_dict(out, batch):
            logged.append(step)
    assert logged == [0, 5, 10]
    model.eval()  # evaluation always gets them
    with torch.no_grad():
        model.step = 3
        metrics = model.get_metrics_dict(model.get_outputs(camera), batch)
    assert torch.isfinite(metrics["pseudo_mpjpe_mm"])


def test_pipeline_train_sets_every_submodule(pipeline):
    """pipeline.train() skips re-setting flags only when every submodule already has them."""
    pipeline.train()
    pipeline.model.network.branches[1].color_mlp.eval()
    pipeline.train()
    assert all(m.training for m in pipeline.modules())
    pipeline.eval()
    assert not any(m.training for m in pipeline.modules())


@pytest.mark.parametrize("with_gaussians", [False, True])
def test_graphed_network_computes_what_the_eager_path_does(pipeline, with_gaussians):
    """The module recorded as CUDA graphs (run here without recording, on every window row) matches predict_hands."""
    from hand4dgs_ns.features.staging import PinnedStager
    from hand4dgs_ns.network.graphed import NetworkStep, _fields, _tensors

    model = pipeline.model
    model.eval()
    frames = torch.tensor([0, 3, 4, 8])
    sequence = torch.zeros_like(frames)
    with torch.no_grad():
        eager = model.predict_hands(sequence, frames, with_gaussians=with_gaussians)
        x = model.inputs.network_inputs(sequence, frames, model.config.window // 2, PinnedStager("cpu"), distinct=False)
        assert x.frames.shape[0] == 4 * model.config.window  # every window row, not de-duplicated
        step = NetworkStep(model.network, with_gaussians, compile=False, fields=_fields(x))
        out = step(*_tensors(x))
    expected = [eager.vertices, eager.joints]
    if with_gaussians:
        expected += [eager.means, eager.quats, eager.scales, eager.opacities, eager.colors]
    assert len(out) == len(expected)
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    step_params = {id(p) for p in step.parameters()}
    assert step_params <= {id(p) for p in model.parameters()} and len(step_params) > 0


def test_index_free_network_predicts_what_training_indexing_does(pipeline, tmp_path):
    """The network alone, fed from the clip's files (as inference feeds it), predicts what the model
    predicts for the same frames through the dataset's (sequence, frame) indices."""
    from hand4dgs_ns.datasets.detect import DatasetOptions, load_sequences
    from hand4dgs_ns.dataparsers.hand_metadata import SequenceTensors
    from hand4dgs_ns.features.staging import PinnedStager
    from hand4dgs_ns.features.video_inputs import build_frame_inputs

    model = pipeline.model
    model.eval()
    data = pipeline.datamanager.get_datapath()
    videos = [SequenceTensors.from_sequence(s) for s in load_sequences(data, DatasetOptions())]
    inputs = build_frame_inputs(videos, "small-cnn", cache_dir=tmp_path / "features")
    frames = torch.tensor([0, 1, 5, 8])
    with torch.no_grad():
        indexed = model.predict_hands(torch.zeros_like(frames), frames)
        x = inputs.network_inputs(torch.zeros_like(frames), frames, model.config.window // 2, PinnedStager("cpu"))
        free = model.network(x)
    for name in ("vertices", "joints", "means", "colors", "scales", "opacities"):
        torch.testing.assert_close(getattr(free, name), getattr(indexed, name))
    template = model.network.branches[0].hand.template
    assert free.betas.shape == (4, 2, template.num_betas)
    assert free.hand_pose.shape == (4, 2, template.num_joints - 1, 3, 3)


def test_network_names_its_pose_and_appearance_parameters(pipeline):
    network = pipeline.model.network
    pose = {id(p) for p in network.pose_parameters()}
    appearance = {id(p) for p in network.appearance_parameters()}
    assert pose and appearance and not pose & appearance
    assert pose | appearance == {id(p) for p in network.parameters()}
    assert {id(p) for p in network.gaussian_parameters()} <= appearance


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_graphs", [False, True])
@pytest.mark.parametrize(
    "mirrored_pose,estimate_input,pixel_colors,pixel_feedback",
    [(False, False, False, False), (True, False, False, False), (True, True, False, False), (False, False, True, False), (True, False, False, True)],
)
def test_cuda_graphs_match_eager_outputs_and_gradients(
    tmp_path, monkeypatch, compile_graphs, mirrored_pose, estimate_input, pixel_colors, pixel_feedback
):
    from conftest import tiny_trainer_config

    config = tiny_trainer_config(tmp_path, monkeypatch, num_frames=9)
    # Full float32 convolutions: with TF32 the two paths pick different kernels and differ by ~1e-3.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    config.pipeline.model.compile_graphs = compile_graphs
    config.pipeline.model.mirrored_pose = mirrored_pose  # the mirror's constants must not copy from the host
    config.pipeline.model.estimate_input = estimate_input  # the estimates are one more graph input
    config.pipeline.model.pixel_colors = pixel_colors  # the crops are sampled inside the graph
    config.pipeline.model.pixel_feedback = pixel_feedback  # so are the feature maps, at the joints
    pipe = config.pipeline.setup(device="cuda", test_mode="val")
    model = pipe.model
    generator = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, device=p.device, generator=generator))
    model.train()
    frames = torch.tensor([0, 3, 4, 8])
    sequence = torch.zeros_like(frames)
    results = []
    # Recorded first, as in training; the second graphed call replays the recorded graphs.
    for graphs in (True, True, False):
        model.config.cuda_graphs = graphs
        model.zero_grad(set_to_none=True)
        hands = model.predict_hands(sequence, frames, with_gaussians=True)
        # A second graph in the same step, as the smoothness loss's neighbour frames (pose only).
        around = model.predict_hands(torch.cat([sequence, sequence]), torch.cat([frames - 1, frames + 1]), with_gaussians=False)
        loss = hands.joints.square().sum() + hands.colors.sum() + hands.scales.sum() + around.joints.square().sum()
        loss.backward()
        grads = [p.grad.clone() if p.grad is not None else None for p in model.network.branches[1].parameters()]
        results.append((hands.joints.detach().clone(), hands.colors.detach().clone(), grads))
    assert len(model._graphs) == 2
    eager = results[2]
    # Recorded graphs replay eager's kernels: gradients agree to float32 rounding. Compiled ones run
    # Inductor's fused kernels, which sum in another order: their gradients were measured up to
    # 1.6e-3 of the largest (mirrored pose with the estimate input) on an H100.
    tolerance = 5e-3 if compile_graphs else 1e-4
    names = [name for name, _ in model.network.branches[1].named_parameters()]
    for joints, colors, grads in results[:2]:
        torch.testing.assert_close(joints, eager[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(colors, eager[1], atol=1e-5, rtol=1e-4)
        # The graph's backward gives zeros where eager autograd leaves None (a parameter the loss does not reach).
        for g, ref, p, name in zip(grads, eager[2], model.network.branches[1].parameters(), names):
            g = torch.zeros_like(p) if g is None else g
            ref = torch.zeros_like(p) if ref is None else ref
            error, scale = float((g - ref).abs().max()), float(ref.abs().max().clamp(min=1.0))
            assert error <= tolerance * scale, f"{name}: gradient differs by {error:.2e} (largest {scale:.2e})"


def test_a_checkpoint_of_other_network_options_is_refused_in_one_sentence(pipeline):
    """As when a run trained before a default changed is resumed with --load-dir."""
    state = dict(pipeline.model.state_dict())
    key = next(k for k in state if k.endswith("color_mlp.0.weight"))
    state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] + 4)  # a decoder that read the crop cue
    with pytest.raises(Hand4DGSError, match="other options"):
        pipeline.load_pipeline({f"_model.{k}": v for k, v in state.items()}, step=0)


def test_the_logged_ground_truth_error_skips_hands_without_a_box(pipeline):
    """As ns-eval: a hand annotated in the ground truth but without a usable box has no prediction."""
    model = pipeline.model
    camera, batch = pipeline.datamanager.next_train(0)
    model.eval()
    with torch.no_grad():
        out = model.get_outputs(camera)
    valid = batch["valid"].clone()
    valid.reshape(-1, 2)[0, 1] = False  # the right hand of the first frame: no box
    gt = out["joints"].detach().clone()
    gt.reshape(-1, 2, 21, 3)[0, 1] += 1.0  # a metre from the (meaningless) prediction there
    labelled = dict(batch, valid=valid, gt_joints=gt, gt_valid=torch.ones_like(valid))
    metrics = model.get_metrics_dict(out, labelled)
    assert float(metrics["gt_mpjpe_mm"]) == pytest.approx(0.0, abs=1e-3)
