"""One shape per hand for a whole video (:attr:`HandNetworkConfig.video_shape`).

The network predicts each frame's shape coefficients from that frame's window; one person's hand
keeps its shape, so at prediction each hand can take the mean of its per-frame shapes over the
video instead. Used alike by the nerfstudio model (``ns-eval``, the viewer) and by ``hand4dgs
infer``, ``export`` and ``render``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.network.hand_network import HandNetwork, NetworkInputs


def mean_shape(betas: Float[Tensor, "F 2 K"], valid: Bool[Tensor, "F 2"]) -> Float[Tensor, "2 K"]:
    """Each hand's mean shape coefficients over the frames where it is present (zeros, the
    template's mean shape, for a hand present in none)."""
    weight = valid.to(betas.dtype)[..., None]
    return (betas * weight).sum(dim=0) / weight.sum(dim=0).clamp(min=1.0)


def with_shape(x: NetworkInputs, shape: Float[Tensor, "2 K"]) -> NetworkInputs:
    """``x`` with each hand's shape set to ``shape`` in every frame."""
    return dataclasses.replace(x, betas=shape.to(x.K).expand(x.K.shape[0], *shape.shape))


@torch.no_grad()
def video_shape(
    network: HandNetwork, inputs: FrameInputs, sequence: int, stager: PinnedStager, batch_frames: int = 256
) -> Optional[Float[Tensor, "2 K"]]:
    """The video's shape of each hand: a pose-only pass over every frame of ``sequence``,
    ``batch_frames`` at a time, then :func:`mean_shape`. None for a network built without
    ``video_shape`` (each frame keeps its own)."""
    if not network.config.video_shape:
        return None
    betas, valid = [], []
    for frames in inputs.frame_batches(sequence, batch_frames):
        x = inputs.network_inputs(
            torch.full_like(frames, sequence), frames, network.config.window // 2, stager,
            with_estimates=network.config.estimate_input, with_color_crops=False,
        )
        prediction = network(x, with_gaussians=False)
        betas.append(prediction.betas)
        valid.append(prediction.valid)
    return mean_shape(torch.cat(betas), torch.cat(valid))
