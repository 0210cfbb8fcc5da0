"""One skinning path for every hand template: smplx's ``lbs`` plus fingertips and OpenPose order.

Conventions are those of :mod:`hand4dgs_ns.hands.template`. Rotation matrices act on column
vectors; ``global_orient`` rotates the hand about its wrist joint, then ``transl`` is added to
vertices and joints (as smplx's MANO does). Batched over a leading B, differentiable, and
device/dtype follow the inputs (the template must match them: use ``template.to(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Float
from smplx.lbs import lbs
from torch import Tensor, nn

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands.template import HandTemplate


@dataclass(frozen=True)
class HandOutput:
    """A posed hand."""

    vertices: Float[Tensor, "B V 3"]
    """Posed mesh vertices (metres)."""
    joints: Float[Tensor, "B 21 3"]
    """The 21 hand joints in OpenPose order (metres)."""


def hand_forward(
    template: HandTemplate,
    global_orient: Float[Tensor, "B 3 3"],
    hand_pose: Float[Tensor, "B Jm1 3 3"],
    betas: Float[Tensor, "B S"],
    transl: Float[Tensor, "B 3"],
) -> HandOutput:
    """Poses and shapes ``template``.

    ``hand_pose`` holds the absolute local rotations of joints 1..J-1 (``hands_mean`` is not
    added here; see :func:`hand_forward_axis_angle`). ``betas`` may have fewer columns than the
    template's basis; the leading components are used.
    """
    b = global_orient.shape[0]
    num_betas = betas.shape[-1]
    expected = {
        "global_orient": (b, 3, 3),
        "hand_pose": (b, template.num_joints - 1, 3, 3),
        "betas": (b, num_betas),
        "transl": (b, 3),
    }
    for name, value in (("global_orient", global_orient), ("hand_pose", hand_pose), ("betas", betas), ("transl", transl)):
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"hand_forward: {name} has shape {tuple(value.shape)}, expected {expected[name]}")
    if num_betas > template.num_betas:
        raise ValueError(f"hand_forward: {num_betas} betas given, the {template.name} template has {template.num_betas}")
    if template.v_template.dtype != betas.dtype:
        raise ValueError(f"hand_forward: template is {template.v_template.dtype}, inputs are {betas.dtype}; use template.to(dtype=...)")

    rotations = torch.cat([global_orient[:, None], hand_pose], dim=1)
    vertices, skeleton = lbs(
        betas,
        rotations,
        template.v_template,
        template.shapedirs[..., :num_betas],
        template.posedirs,
        template.J_regressor,
        template.parents,
        template.weights,
        pose2rot=False,
    )
    tips = vertices[:, template.tip_vertex_ids]
    joints = torch.cat([skeleton, tips], dim=1)[:, template.openpose_map]
    offset = transl[:, None]
    return HandOutput(vertices=vertices + offset, joints=joints + offset)


def hand_forward_axis_angle(
    template: HandTemplate,
    global_orient: Float[Tensor, "B 3"],
    hand_pose: Float[Tensor, "B P3"],
    betas: Float[Tensor, "B S"],
    transl: Float[Tensor, "B 3"],
) -> HandOutput:
    """:func:`hand_forward` with axis-angle inputs; ``hand_pose`` ((J-1)*3) is added to
    ``template.hands_mean`` first, as smplx's MANO does (zeros for a flat-mean template)."""
    b = global_orient.shape[0]
    if tuple(hand_pose.shape) != (b, template.hands_mean.shape[0]):
        raise ValueError(f"hand_forward_axis_angle: hand_pose has shape {tuple(hand_pose.shape)}, expected {(b, template.hands_mean.shape[0])}")
    pose = (hand_pose + template.hands_mean).reshape(b, template.num_joints - 1, 3)
    return hand_forward(template, axis_angle_to_matrix(global_orient), axis_angle_to_matrix(pose), betas, transl)


class HandLayer(nn.Module):
    """Holds a template as non-persistent buffers (checkpoints stay small; ``.to()`` moves it)."""

    def __init__(self, template: HandTemplate) -> None:
        super().__init__()
        self._name = template.name
        self._side = template.side
        self._tensor_fields = [f.name for f in fields(template) if f.name not in ("name", "side")]
        for name in self._tensor_fields:
            self.register_buffer(name, getattr(template, name), persistent=False)

    @property
    def template(self) -> HandTemplate:
        """The template as currently held (after any ``.to()`` of the module)."""
        return HandTemplate(name=self._name, side=self._side, **{name: getattr(self, name) for name in self._tensor_fields})

    def forward(
        self,
        global_orient: Float[Tensor, "B 3 3"],
        hand_pose: Float[Tensor, "B Jm1 3 3"],
        betas: Float[Tensor, "B S"],
        transl: Float[Tensor, "B 3"],
    ) -> HandOutput:
        """See :func:`hand_forward`."""
        return hand_forward(self.template, global_orient, hand_pose, betas, transl)
