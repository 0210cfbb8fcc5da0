"""CUDA graphs for the network part of a training step: :meth:`HandNetwork.forward` and its backward.

A training step launches about a thousand small kernels, and on a GPU the host's time to launch
them, not the GPU's time to run them, sets the pace. :func:`torch.cuda.make_graphed_callables`
records the forward and the backward of the network once and replays each as a single launch;
autograd still connects the replayed backward to the eager renderer and losses around it.

Graphs need fixed shapes and no host-GPU round trips, so a graphed batch sends every window row
(no de-duplication of frames that neighbouring windows share); one graph is recorded per batch
size and loss phase. With ``compile`` the network's :meth:`~HandNetwork.decode` is
``torch.compile``d before recording, so the graphs hold fewer, fused kernels.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import torch
from torch import Tensor, nn

from hand4dgs_ns.network.hand_network import GAUSSIAN_FIELDS, MATTE_FIELD, HandNetwork, HandsPrediction, NetworkInputs

_POSE_OUTPUTS = ("vertices", "joints")


class NetworkStep(nn.Module):
    """The network's forward with tensors in and tensors out, as graphs need.

    The network is used, not owned: it is kept out of this module's submodules so it stays in
    the model's state dict only, and :meth:`parameters` lists what the graph's backward must reach.
    """

    def __init__(self, network: HandNetwork, with_gaussians: bool, compile: bool, fields: tuple[str, ...]):
        super().__init__()
        object.__setattr__(self, "network", network)  # not registered as a submodule
        self.with_gaussians = with_gaussians
        self.fields = fields
        self.outputs = _POSE_OUTPUTS + (GAUSSIAN_FIELDS if with_gaussians else ())
        if network.matte is not None:  # graphs are training steps, where the matte trains in every phase
            self.outputs += (MATTE_FIELD,)
        self.decoder = torch.compile(network.decode, dynamic=False) if compile else None

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The parameters the outputs depend on; the appearance only matters once Gaussians are rendered
        (the matte, which trains in every phase, excepted)."""
        yield from self.network.pose_parameters()
        if self.with_gaussians:
            yield from self.network.appearance_parameters()
        elif self.network.matte is not None:
            yield from self.network.matte.parameters()

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        prediction = self.network(NetworkInputs(**dict(zip(self.fields, tensors))), self.with_gaussians, self.decoder)
        # Graph outputs are tensors made by the graph: the valid flags are an input, so they are left out.
        return tuple(getattr(prediction, name) for name in self.outputs)


class GraphedNetwork:
    """Replays the recorded graphs of one batch size and loss phase; returns a :class:`HandsPrediction`."""

    def __init__(self, network: HandNetwork, sample: NetworkInputs, with_gaussians: bool, compile: bool):
        step = NetworkStep(network, with_gaussians, compile, _fields(sample))
        self.outputs, self.fields = step.outputs, step.fields
        self._graphed = torch.cuda.make_graphed_callables(step, _tensors(sample), num_warmup_iters=3)

    def __call__(self, x: NetworkInputs) -> HandsPrediction:
        if _fields(x) != self.fields:  # a replay reads only the recorded inputs: others would be ignored
            raise ValueError(f"these graphs were recorded with inputs {self.fields}, not {_fields(x)}")
        outputs = self._graphed(*(getattr(x, name) for name in self.fields))  # the recorded inputs, in their order
        return HandsPrediction(valid=x.valid, **dict(zip(self.outputs, outputs)))


def _fields(x: NetworkInputs) -> tuple[str, ...]:
    """The fields of ``x`` that hold tensors (the optional ones only when given), in order."""
    return tuple(f.name for f in dataclasses.fields(x) if getattr(x, f.name) is not None)


def _tensors(x: NetworkInputs) -> tuple[Tensor, ...]:
    return tuple(getattr(x, name) for name in _fields(x))
