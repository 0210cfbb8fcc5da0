"""Small building blocks of the Hand-4DGS network: token squashing, temporal convolution, MLPs."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


def squash_tokens(tokens: Float[Tensor, "*b c"], scale: float) -> Float[Tensor, "*b c"]:
    """Bounds raw backbone tokens to (-1, 1) with ``tanh(x / scale)``.

    The paper rescales the frozen backbone's widely ranging token values with a fixed
    squashing function before use (its formula was lost in extraction); ``tanh`` with a scale
    near the tokens' typical magnitude keeps small values linear and bounds outliers.
    """
    return torch.tanh(tokens / scale)


class TemporalConv(nn.Module):
    """The TC layer (paper, section 3.4): a 1-D convolution over the window ``[t-k, t+k]``.

    Each token position is convolved over time independently with shared weights, reducing
    ``in_dim`` channels to ``out_dim``. The kernel spans the whole window, so the output is one
    feature per token for the centre frame. A window of one frame is the "no TC" ablation: a
    per-frame linear projection.
    """

    def __init__(self, in_dim: int, out_dim: int, window: int):
        super().__init__()
        self.window = window
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=window)

    def forward(self, tokens: Float[Tensor, "b window n c"]) -> Float[Tensor, "b n out"]:
        b, w, n, c = tokens.shape
        assert w == self.window, f"expected a window of {self.window} frames, got {w}"
        x = tokens.permute(0, 2, 3, 1).reshape(b * n, c, w)
        return torch.relu(self.conv(x)).reshape(b, n, -1)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int, zero_init_last: bool = True) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them; the last one zero-initialised.

    Zero-initialising the last layer makes every head start from its prior (rest pose, mean
    shape, box-based translation, grey colour unless the model starts it at the mean hand colour,
    base scale), which the paper uses for stable convergence at the start of training.
    """
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            modules.append(nn.ReLU())
    if zero_init_last:
        nn.init.zeros_(modules[-1].weight)
        nn.init.zeros_(modules[-1].bias)
    return nn.Sequential(*modules)
