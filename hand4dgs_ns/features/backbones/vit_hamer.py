"""HaMeR's ViT-H backbone (ViTPose style), with HaMeR's parameter names, and its checkpoint loader.

Follows ``hamer/models/backbones/vit.py``: a 256 x 192 crop, 16 x 16 patches from a conv with
padding 2 (so a 16 x 12 token grid), 32 pre-norm blocks of width 1280 with 16 heads, MLP ratio
4, qkv bias, LayerNorm eps 1e-6, a final LayerNorm ``last_norm``, and an absolute position
embedding of ``num_patches + 1`` entries whose first (class-token) slot is added to every
token: ``x + pos_embed[:, 1:] + pos_embed[:, :1]``. HaMeR returns ``(B, 1280, 16, 12)``; here
the same values come out as ``(B, 192, 1280)``, tokens in row-major grid order.

Written here because timm's ``VisionTransformer`` (a nerfstudio dependency) has neither the
padded patch conv, nor the class-slot position trick, nor the ``last_norm`` name. Attention
uses ``scaled_dot_product_attention`` (flash kernels on GPU); the maths is HaMeR's.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones.base import HandBackbone

CHECKPOINT_PREFIX = "backbone."
_GET_IT = "download HaMeR's checkpoint from its project page and pass its path"


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of the ViT; the defaults are HaMeR's ViT-H."""

    img_hw: tuple[int, int] = (256, 192)
    """Input crop height and width."""
    patch_size: int = 16
    """Patch (conv kernel and stride) size."""
    patch_padding: int = 2
    """Zero padding of the patch conv (HaMeR: ``4 + 2 * (ratio // 2 - 1)`` = 2)."""
    embed_dim: int = 1280
    """Token width."""
    depth: int = 32
    """Transformer blocks."""
    num_heads: int = 16
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width over token width."""
    qkv_bias: bool = True
    """Bias on the qkv projection."""
    norm_eps: float = 1e-6
    """LayerNorm epsilon."""

    @property
    def grid_hw(self) -> tuple[int, int]:
        """Token grid the padded patch conv produces."""
        k, p = self.patch_size, self.patch_padding
        return tuple((n + 2 * p - k) // k + 1 for n in self.img_hw)  # type: ignore[return-value]

    @property
    def num_patches(self) -> int:
        """Positions the position embedding is sized for (HaMeR: from the unpadded grid)."""
        return (self.img_hw[0] // self.patch_size) * (self.img_hw[1] // self.patch_size)


HAMER_VIT_H = ViTConfig()


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size, padding=cfg.patch_padding)

    def forward(self, x: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b n c"]:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale head_dim**-0.5, as HaMeR
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HamerViT(HandBackbone):
    """HaMeR's frozen ViT: ``(N, 3, 256, 192)`` normalised crops -> ``(N, 192, 1280)`` tokens.

    On CUDA the forward pass runs under bf16 autocast (``bf16=False`` turns it off); tokens
    come back as float32. Use :meth:`from_checkpoint` for HaMeR's weights; the constructor
    alone gives random weights (tests, benchmarks).
    """

    def __init__(self, config: ViTConfig = HAMER_VIT_H, bf16: bool = True):
        super().__init__()
        gh, gw = config.grid_hw
        if gh * gw != config.num_patches:
            raise ValueError(f"patch grid {gh}x{gw} does not match the {config.num_patches} position slots")
        self.config = config
        self.name = "hamer-vit-h"
        self.num_tokens = gh * gw
        self.token_dim = config.embed_dim
        self.input_hw = config.img_hw
        self.trainable = False
        self.checkpoint = None
        self.bf16 = bf16
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.embed_dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.last_norm = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> HamerViT:
        """Stays in eval mode: the backbone is frozen."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, crops: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n t c"]:
        if tuple(crops.shape[-2:]) != self.input_hw:
            raise ValueError(f"expected crops of {self.input_hw}, got {tuple(crops.shape[-2:])}")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=crops.is_cuda and self.bf16):
            x = self.patch_embed(crops)
            x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
            for block in self.blocks:
                x = block(x)
            x = self.last_norm(x)
        return x.float()

    @classmethod
    def from_checkpoint(cls, path: Path, config: ViTConfig = HAMER_VIT_H, bf16: bool = True) -> HamerViT:
        """HaMeR's backbone from its Lightning checkpoint (``state_dict`` keys ``backbone.*``).

        Keys and shapes must match ``config`` exactly; nothing is downloaded. The checkpoint is
        read with ``weights_only=True``; its non-tensor metadata (HaMeR's yacs config) is
        replaced by inert stand-ins, so no code from the file runs.
        """
        path = Path(path)
        if not path.is_file():
            raise Hand4DGSError(f"HaMeR checkpoint {path} does not exist: {_GET_IT}.")
        state = _backbone_state(load_checkpoint_tensors(path), path)
        with torch.device("meta"):
            model = cls(config, bf16=bf16)
        _check_state(state, model.state_dict(), path)
        model.load_state_dict({k: v.float().clone() for k, v in state.items()}, strict=True, assign=True)
        model.requires_grad_(False)
        model.checkpoint = path
        return model


class _InertObject:
    """Stand-in for any non-tensor class a checkpoint pickles: it becomes a plain mapping."""

    def __new__(cls, *args: object, **kwargs: object) -> OrderedDict:  # type: ignore[misc]
        # An OrderedDict is what the weights-only unpickler lets be filled (SETITEMS) and
        # built (BUILD into its __dict__), which covers dict subclasses such as yacs' CfgNode.
        return OrderedDict()


def load_checkpoint_tensors(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped where possible.

    Classes the weights-only unpickler does not know (Lightning checkpoints pickle their
    hyper-parameters) load as empty mappings instead of failing; tensors load as usual.
    """
    try:
        is_zip = zipfile.is_zipfile(path)
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(path) if is_zip else []
        stand_ins = [(_InertObject, name) for name in unknown]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:  # noqa: BLE001 - every failure to read the file is the user's file problem
        # torch's own message runs to several sentences (and suggests weights_only=False); the
        # chained exception keeps it for debugging.
        raise Hand4DGSError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}): {_GET_IT}.") from exc


def _backbone_state(checkpoint: object, path: Path) -> dict[str, Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise Hand4DGSError(f"{path} holds no state_dict: {_GET_IT}.")
    prefix = CHECKPOINT_PREFIX
    backbone = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    if not backbone:
        raise Hand4DGSError(f"{path} has no '{prefix}*' weights, so it is not a HaMeR checkpoint: {_GET_IT}.")
    return backbone


def _check_state(state: dict[str, Tensor], expected: dict[str, Tensor], path: Path) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problem = None
    if missing:
        problem = f"it lacks {CHECKPOINT_PREFIX}{missing[0]} ({len(missing)} keys missing)"
    elif unexpected:
        problem = f"it has the unexpected key {CHECKPOINT_PREFIX}{unexpected[0]} ({len(unexpected)} in all)"
    else:
        for key, value in expected.items():
            got = state[key]
            if not isinstance(got, Tensor) or tuple(got.shape) != tuple(value.shape):
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                problem = f"{CHECKPOINT_PREFIX}{key} is {shape}, expected {tuple(value.shape)}"
                break
    if problem is not None:
        raise Hand4DGSError(f"{path} does not match HaMeR's ViT backbone because {problem}: {_GET_IT}.")
