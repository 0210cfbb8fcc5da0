"""Hand backbones: HaMeR's ViT (architecture, names, checkpoint loading), the small CNN, the registry."""

import copy
import pickle
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones import HAMER_VIT_H, HamerViT, SmallCNN, ViTConfig, make_backbone

TINY = ViTConfig(img_hw=(64, 48), depth=2, embed_dim=64, num_heads=4)

# Parameter names of hamer/models/backbones/vit.py (the checkpoint adds the "backbone." prefix).
HAMER_TOP_KEYS = {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed", "last_norm.weight", "last_norm.bias"}
HAMER_BLOCK_KEYS = {
    f"{m}.{p}"
    for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for p in ("weight", "bias")
}


class FakeCfgNode(dict):
    """Stands in for yacs' CfgNode, which HaMeR's Lightning checkpoint pickles in its hyper-parameters."""


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = HamerViT(TINY)
    with torch.no_grad():  # non-trivial norms and position embedding, so a mix-up would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
        model.pos_embed.normal_(0, 0.5)
    return model


def _write_hamer_like_checkpoint(path, model):
    cfg = FakeCfgNode(MODEL=FakeCfgNode(IMAGE_SIZE=256, BBOX_SHAPE=[192, 256]))
    cfg.__dict__["__immutable__"] = True
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    state["mano_head.decpose.weight"] = torch.randn(90, 1024)
    torch.save({"epoch": 7, "state_dict": state, "hyper_parameters": {"cfg": cfg}}, path)
    return path


def _assert_one_sentence(message, path):
    assert str(path) in message
    assert "download HaMeR's checkpoint" in message
    assert message.endswith(".") and ". " not in message and "\n" not in message


def test_tiny_vit_forward_shapes_and_frozen():
    model = _tiny()
    assert (model.name, model.num_tokens, model.token_dim, model.input_hw) == ("hamer-vit-h", 12, 64, (64, 48))
    assert model.trainable is False
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    tokens = model(torch.randn(5, 3, 64, 48))
    assert tokens.shape == (5, 12, 64) and tokens.dtype == torch.float32
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 64, 64))


def test_vit_h_config_has_hamers_size_without_allocating_it():
    with torch.device("meta"):
        model = HamerViT(HAMER_VIT_H)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 630_912_000
    assert (model.num_tokens, model.token_dim, model.input_hw) == (192, 1280, (256, 192))
    assert HAMER_VIT_H.grid_hw == (16, 12)
    assert model.pos_embed.shape == (1, 193, 1280)
    keys = set(model.state_dict())
    blocks = {f"blocks.{i}.{k}" for i in range(32) for k in HAMER_BLOCK_KEYS}
    assert keys == HAMER_TOP_KEYS | blocks


def test_vit_matches_hamers_forward_pass_with_timm_blocks():
    """An independent re-statement of HaMeR's ViT.forward_features, with timm's ViT blocks."""
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    model = _tiny()
    sd = model.state_dict()
    x = torch.randn(3, 3, 64, 48)
    y = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16, padding=2)
    b, c, hp, wp = y.shape
    y = y.flatten(2).transpose(1, 2)
    y = y + sd["pos_embed"][:, 1:] + sd["pos_embed"][:, :1]
    for i in range(TINY.depth):
        block = timm_vit.Block(64, 4, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
        block.load_state_dict({k[len(f"blocks.{i}."):]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")})
        y = block.eval()(y)
    y = F.layer_norm(y, (c,), sd["last_norm.weight"], sd["last_norm.bias"], eps=1e-6)
    hamer_out = y.permute(0, 2, 1).reshape(b, -1, hp, wp)  # HaMeR's (B, C, Hp, Wp)
    assert hamer_out.shape == (3, 64, 4, 3)
    torch.testing.assert_close(model(x), hamer_out.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_loads_a_hamer_lightning_checkpoint(tmp_path):
    source = _tiny(seed=1)
    path = _write_hamer_like_checkpoint(tmp_path / "hamer.ckpt", source)
    with pytest.raises(pickle.UnpicklingError):  # the plain weights-only load refuses the config
        torch.load(path, map_location="cpu", weights_only=True)
    loaded = HamerViT.from_checkpoint(path, config=TINY)
    assert loaded.checkpoint == path
    assert not any(p.requires_grad or p.is_meta for p in loaded.parameters())
    x = torch.randn(2, 3, 64, 48)
    torch.testing.assert_close(loaded(x), source(x))
    assert str(path) in loaded.weights_identity()


def test_wrong_checkpoints_give_one_sentence(tmp_path):
    tiny = _write_hamer_like_checkpoint(tmp_path / "tiny.ckpt", _tiny())
    cases = [tmp_path / "missing.ckpt", tiny]
    with pytest.raises(Hand4DGSError) as err:
        HamerViT.from_checkpoint(tiny, config=ViTConfig(img_hw=(64, 48), depth=2, embed_dim=32, num_heads=4))
    assert "backbone.pos_embed is (1, 13, 64), expected (1, 13, 32)" in str(err.value)
    _assert_one_sentence(str(err.value), tiny)

    no_backbone = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"head.weight": torch.zeros(2)}}, no_backbone)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    cases += [no_backbone, garbage]
    for path in cases:
        with pytest.raises(Hand4DGSError) as err:
            HamerViT.from_checkpoint(path, config=HAMER_VIT_H)  # the full ViT-H is never allocated
        _assert_one_sentence(str(err.value), path)


def test_small_cnn_trains():
    model = SmallCNN()
    assert (model.name, model.num_tokens, model.token_dim, model.input_hw, model.trainable) == ("small-cnn", 12, 128, (64, 48), True)
    tokens = model(torch.randn(4, 3, 64, 48))
    assert tokens.shape == (4, 12, 128)
    tokens.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_small_cnn_runs_channels_last_on_the_cpu_with_the_default_layouts_values():
    torch.manual_seed(0)
    model = SmallCNN()
    convs = [m for m in model.net if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) and not c.weight.is_contiguous() for c in convs)
    # The same weights in the default layout, the one other devices keep.
    reference = copy.deepcopy(model.net)
    for m in reference:
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data = m.weight.data.contiguous()
    crops = torch.randn(6, 3, 64, 48)
    with torch.no_grad():
        expected = reference(crops).flatten(2).transpose(1, 2)
        torch.testing.assert_close(model(crops), expected, atol=1e-5, rtol=1e-5)
    # A checkpoint round trip keeps the layout and the values.
    loaded = SmallCNN()
    loaded.load_state_dict(model.state_dict())
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in loaded.net if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops), model(crops), atol=0, rtol=0)
    # Any other device gets the default layout back (the meta device stands in for CUDA here).
    assert all(m.weight.is_contiguous() for m in model.to("meta").net if isinstance(m, torch.nn.Conv2d))


def test_a_resumed_optimizer_state_is_laid_out_like_the_cnn_weights():
    from hand4dgs_ns.trainer import match_state_layouts

    torch.manual_seed(0)
    model = SmallCNN()
    crops = torch.randn(4, 3, 64, 48)

    def step(optimizer):
        optimizer.zero_grad()
        model(crops).square().mean().backward()
        optimizer.step()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    step(optimizer)
    saved_weights, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    step(optimizer)
    expected = model.net[0].weight.detach().clone()
    # The state as a checkpoint saved before the CPU layout (or on CUDA) holds it: the default layout.
    for state in saved_state["state"].values():
        state.update({k: v.contiguous() for k, v in state.items() if v.dim() == 4})

    def resumed_weight(match: bool) -> torch.Tensor:
        model.load_state_dict(saved_weights)
        resumed = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
        resumed.load_state_dict(copy.deepcopy(saved_state))
        if match:
            match_state_layouts(resumed)
        step(resumed)
        return model.net[0].weight.detach().clone()

    assert not torch.allclose(resumed_weight(match=False), expected, atol=1e-4)  # fused Adam reads flat memory
    torch.testing.assert_close(resumed_weight(match=True), expected, atol=1e-6, rtol=1e-5)


def test_small_cnn_takes_larger_crops_with_the_same_token_grid():
    model = make_backbone("small-cnn", crop_size=(128, 96))
    assert (model.input_hw, model.num_tokens, model.token_dim) == ((128, 96), 12, 128)
    assert model(torch.randn(2, 3, 128, 96)).shape == (2, 12, 128)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 10  # one stage more than 64 x 48
    for bad in [(100, 75), (128, 48), (32, 24)]:
        with pytest.raises(Hand4DGSError, match="power of two"):
            make_backbone("small-cnn", crop_size=bad)
    with pytest.raises(Hand4DGSError, match="reads its own crop size"):
        make_backbone("hamer-vit-h", crop_size=(128, 96))


def test_network_builds_its_cnn_at_the_widths_asked_for():
    from hand4dgs_ns.network.config import HandNetworkConfig
    from hand4dgs_ns.network.hand_network import HandNetwork, InputSpec

    sizes = dict(head_width=32, head_layers=2, embed_rank=8, gaussians_per_face=1)
    network = HandNetwork(HandNetworkConfig(cnn_channels=(16, 32, 64, 48), **sizes), InputSpec("crops", (3, 64, 48)))
    widths = [m.out_channels for m in network.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths[::2] == [16, 32, 64, 48] and network.token_shape == (12, 48)
    # The default is what checkpoints saved before the option existed were built with.
    default = HandNetwork(HandNetworkConfig(**sizes), InputSpec("crops", (3, 64, 48)))
    assert {k: v.shape for k, v in default.backbone.state_dict().items()} == {k: v.shape for k, v in SmallCNN().state_dict().items()}
    with pytest.raises(Hand4DGSError, match="cnn-channels 16 32 60 48: give four widths, each a positive multiple of 8"):
        HandNetwork(HandNetworkConfig(cnn_channels=(16, 32, 60, 48), **sizes), InputSpec("crops", (3, 64, 48)))


def test_registry(tmp_path):
    cnn = make_backbone("small-cnn")
    assert isinstance(cnn, SmallCNN)
    with pytest.raises(Hand4DGSError, match="download HaMeR's checkpoint"):
        make_backbone("hamer-vit-h")
    with pytest.raises(Hand4DGSError, match="takes no weights file"):
        make_backbone("small-cnn", checkpoint=tmp_path / "x.ckpt")
    tiny = _write_hamer_like_checkpoint(tmp_path / "tiny.ckpt", _tiny())
    with pytest.raises(Hand4DGSError) as err:  # a ViT-H is expected: the tiny one does not match
        make_backbone("hamer-vit-h", checkpoint=tiny)
    _assert_one_sentence(str(err.value), tiny)


def test_weights_identity_follows_the_parameters():
    a, b = _tiny(seed=0), _tiny(seed=0)
    assert a.weights_identity() == b.weights_identity()
    with torch.no_grad():
        b.last_norm.bias.add_(1e-3)
    assert a.weights_identity() != b.weights_identity()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_extraction_on_cuda_is_close_to_float32():
    model = _tiny()
    x = torch.randn(8, 3, 64, 48)
    reference = model(x)
    gpu = model.cuda()(x.cuda())
    assert gpu.dtype == torch.float32 and gpu.device.type == "cuda"
    rel = (gpu.cpu() - reference).norm() / reference.norm()
    assert 0 < rel < 3e-2  # bf16 rounding is visible, but small
    model.bf16 = False
    torch.testing.assert_close(model(x.cuda()).cpu(), reference, atol=2e-3, rtol=2e-3)
