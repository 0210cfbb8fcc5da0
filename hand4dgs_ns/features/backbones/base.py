"""The interface every hand feature backbone offers: normalised crops in, tokens out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn


class HandBackbone(nn.Module):
    """A crop encoder: ``(N, 3, h, w)`` ImageNet-normalised crops -> ``(N, num_tokens, token_dim)``.

    Left hands arrive mirrored (see :mod:`hand4dgs_ns.features.crops`). A frozen backbone
    (``trainable=False``) is run once per sequence and its tokens are cached; a trainable one
    is part of the model and only its crops are cached.
    """

    name: str
    """Registry name, also part of the feature cache key."""
    num_tokens: int
    """Tokens per crop."""
    token_dim: int
    """Channels per token."""
    input_hw: tuple[int, int]
    """Crop height and width the backbone expects."""
    trainable: bool
    """Whether the backbone learns with the model (crops cached) or is frozen (tokens cached)."""
    checkpoint: Path | None
    """The weights file the backbone was loaded from, if any."""

    def forward(self, crops: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n t c"]:
        raise NotImplementedError

    def weights_identity(self) -> str:
        """A string that changes whenever the weights may have changed (for cache keys).

        For a loaded checkpoint: its resolved path, size and modification time (cheap); for
        weights made in memory: a hash of the parameters.
        """
        if self.checkpoint is not None:
            stat = self.checkpoint.stat()
            return f"{self.checkpoint.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256()
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return f"params:{digest.hexdigest()}"

