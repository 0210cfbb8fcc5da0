"""The Hand-4DGS model on a tiny sequence: batching invariance, outputs, losses."""

from __future__ import annotations

import pytest
import torch

from hand4dgs_ns.method_configs import hand4dgs_trainer


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from conftest import write_random_sequence

    root = tmp_path_factory.mktemp("model")
    data = write_random_sequence(root / "clip", num_frames=9, width=80, height=60)
    mp = pytest.MonkeyPatch()
    mp.setenv("HAND4DGS_CACHE_DIR", str(root / "cache"))
    config = hand4dgs_trainer(100)
    config.pipeline.datamanager.data = data
    config.pipeline.model.gaussians_per_face = 1
    pipe = config.pipeline.setup(device="cpu", test_mode="val")
    # Non-zero heads, so the prediction really depends on the inputs.
    with torch.no_grad():
        for p in pipe.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    yield pipe
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
    grads = [p.grad for p in model.branches[0].color_mlp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
