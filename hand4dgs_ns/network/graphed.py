"""CUDA graphs for the network part of a training step (backbone, both hand branches, Gaussians).

A training step launches about a thousand small kernels, and on a GPU the host's time to launch
them, not the GPU's time to run them, sets the pace. :func:`torch.cuda.make_graphed_callables`
records the forward and the backward of the network once and replays each as a single launch;
autograd still connects the replayed backward to the eager renderer and losses around it.

Graphs need fixed shapes and no host-GPU round trips, so the graphed network takes the window
rows of every frame and runs the backbone on all of them (no de-duplication of frames shared
by neighbouring windows); one graph is recorded per batch size and loss phase. With the model's
``compile_graphs`` (default) the network is ``torch.compile``d before recording, so the graphs
hold fewer, fused kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from hand4dgs_ns.features.crops import normalized_frame_boxes

if TYPE_CHECKING:
    from hand4dgs_ns.model.hand4dgs import Hand4DGSModel


class NetworkStep(nn.Module):
    """Window rows in, both hands (and their Gaussians) out: the part of a step that is graphed.

    The model's backbone and branches are used, not owned: they are kept out of this module's
    submodules so they stay in the model's state dict only, and :meth:`parameters` lists them
    for the graph's backward.
    """

    def __init__(self, model: Hand4DGSModel, with_gaussians: bool, hands: Optional[Callable] = None):
        super().__init__()
        object.__setattr__(self, "model", model)  # not registered as a submodule
        self.with_gaussians = with_gaussians
        self.hands = hands if hands is not None else model._hands  # the model's _hands, or a compiled version of it

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The parameters the outputs depend on (the graph's backward must reach every one of them)."""
        if self.model.backbone is not None:
            yield from self.model.backbone.parameters(recurse)
        for branch in self.model.branches:
            for module in (branch.tc, branch.shape_head, branch.pose_head, branch.transl_head):
                yield from module.parameters(recurse)
            if self.with_gaussians:  # the appearance of the Gaussians only matters once they are rendered
                for module in (branch.embed, branch.color_mlp, branch.scale_mlp):
                    yield from module.parameters(recurse)
                yield from (branch.log_scale_base, branch.opacity_logit)

    def forward(self, window: Tensor, rows: Tensor, image_hw: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        inputs = model._device_inputs()
        b, w = window.shape
        flat = window.reshape(-1)
        tokens = tuple(model._tokens(inputs.data[flat, slot]).reshape(b, w, *model.token_shape) for slot in range(2))
        bbox, valid, K, c2w = inputs.bbox[rows], inputs.valid[rows], inputs.K[rows], inputs.c2w[rows]
        box_norm = normalized_frame_boxes(bbox, image_hw)
        verts, joints, _valid, *gaussians = self.hands(tokens, box_norm, bbox, valid, K, c2w, self.with_gaussians)
        # Graph outputs are tensors only: the valid flags are an input, and no Gaussians in the vertex phase.
        return (verts, joints, *gaussians) if self.with_gaussians else (verts, joints)


def graphed_network(model: Hand4DGSModel, window: Tensor, rows: Tensor, image_hw: Tensor, with_gaussians: bool) -> NetworkStep:
    """A :class:`NetworkStep` whose forward and backward replay CUDA graphs recorded on these inputs' shapes."""
    # Compiled first (config compile_graphs), the graphs replay fused kernels: fewer, shorter launches.
    hands = torch.compile(model._hands, dynamic=False) if model.config.compile_graphs else None
    step = NetworkStep(model, with_gaussians, hands)
    return torch.cuda.make_graphed_callables(step, (window, rows, image_hw), num_warmup_iters=3)
