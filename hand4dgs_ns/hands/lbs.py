"""One skinning path for every hand template: smplx's LBS, one tree level at a time, plus fingertips and OpenPose order.

Conventions are those of :mod:`hand4dgs_ns.hands.template`. Rotation matrices act on column
vectors; ``global_orient`` rotates the hand about its wrist joint, then ``transl`` is added to
vertices and joints (as smplx's MANO does). Batched over a leading B, differentiable, and
device/dtype follow the inputs (the template must match them: use ``template.to(...)``).

:func:`linear_blend_skinning` computes exactly what ``smplx.lbs.lbs(..., pose2rot=False)``
computes, with smplx's shape blend, but composes the kinematic chain
with one batched matmul per tree level (:func:`relative_transforms`) instead of one per joint,
and skips the pose correctives of templates that have none. Training is bound by kernel
launches, and smplx's per-joint loop (which on a GPU also waits for the device at every joint
to read ``parents[i]``) was a large share of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
import torch.nn.functional as F
from smplx.lbs import blend_shapes, transform_mat
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


@dataclass(frozen=True)
class KinematicLevels:
    """A kinematic tree grouped by depth, so that transforms are composed one level at a time.

    Built once per template (:attr:`HandTemplate.kinematic_levels`); the index tensors live on
    the device of the template's ``parents``, so using them neither copies to the device nor
    waits for it.
    """

    level_order: Int[Tensor, " J"]
    """Joint indices sorted by depth (the root first, ties by index): joint order -> level order."""
    joint_order: Int[Tensor, " J"]
    """The inverse permutation: level order -> joint order."""
    sizes: tuple[int, ...]
    """Joints per level; level 0 is the root alone."""
    parent_slots: tuple[slice | Tensor | None, ...]
    """For each level after the root's, where its joints' parents sit in the previous level:
    None for the whole level in order (or its only joint, which the matmul broadcasts), a slice
    for a run of it or one joint of it, else an index tensor."""


def kinematic_levels(parents: Int[Tensor, " J"]) -> KinematicLevels:
    """Groups the tree of ``parents`` (``parents[0] == -1``, every parent before its child) by depth.

    Reads ``parents`` on the host once (a device sync when it is on a GPU).
    """
    parent_of = parents.tolist()
    if not parent_of or parent_of[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parent_of) if j > 0):
        raise ValueError(f"kinematic_levels: parents {parent_of} are not a tree rooted at joint 0 with every parent listed before its children")
    depth = [0]
    for p in parent_of[1:]:
        depth.append(depth[p] + 1)
    order = sorted(range(len(parent_of)), key=lambda j: (depth[j], j))
    position = {joint: i for i, joint in enumerate(order)}
    sizes = [depth.count(d) for d in range(max(depth) + 1)]
    starts = [sum(sizes[:d]) for d in range(len(sizes))]
    slots: list[slice | Tensor | None] = []
    for d in range(1, len(sizes)):
        slot = [position[parent_of[j]] - starts[d - 1] for j in order[starts[d] : starts[d] + sizes[d]]]
        # Slicing costs a copy into zeros in the backward pass; the whole level costs nothing.
        if slot == list(range(sizes[d - 1])) or (sizes[d - 1] == 1):
            slots.append(None)
        elif len(set(slot)) == 1:
            slots.append(slice(slot[0], slot[0] + 1))
        elif slot == list(range(slot[0], slot[0] + len(slot))):
            slots.append(slice(slot[0], slot[0] + len(slot)))
        else:
            slots.append(torch.tensor(slot, device=parents.device))
    return KinematicLevels(
        level_order=torch.tensor(order, device=parents.device),
        joint_order=torch.tensor([position[j] for j in range(len(order))], device=parents.device),
        sizes=tuple(sizes),
        parent_slots=tuple(slots),
    )


def relative_transforms(
    rotations: Float[Tensor, "B J 3 3"], joints: Float[Tensor, "B J 3"], levels: KinematicLevels
) -> Float[Tensor, "B J 4 4"]:
    """The relative transforms of smplx's ``batch_rigid_transform``: each joint's world transform
    with its rest position taken out, ``A_j = G_j - G_j [J_j; 0]``, which the skinning blends.

    Written by hand instead of calling smplx for speed: smplx composes the chain one joint at a
    time (a matmul per joint forward and backward, plus a device sync per joint on a GPU);
    here each tree level is one batched matmul (the open hand has 5 levels, MANO 4).
    """
    b, j = joints.shape[:2]
    rot = rotations.reshape(b * j, 3, 3)
    rest = joints.reshape(b * j, 3, 1)
    # Turning joint j by R_j about its rest position is [R_j | J_j - R_j J_j]; composed from
    # the root these give A_j directly (the same product as smplx's G_j, rearranged), so
    # neither the parents' rest joints nor G_j's correction are needed.
    local = transform_mat(rot, torch.baddbmm(rest, rot, rest, alpha=-1)).view(b, j, 4, 4)
    # Levels lead (J, B, 4, 4) so that each level and each parent run is a contiguous block
    # that the matmul takes without a copy.
    parts = local.transpose(0, 1).index_select(0, levels.level_order).split(levels.sizes, dim=0)
    world = [parts[0]]
    for part, slot in zip(parts[1:], levels.parent_slots):
        if slot is None:
            parent = world[-1]
        elif isinstance(slot, slice):
            parent = world[-1][slot]
        else:
            parent = world[-1].index_select(0, slot)
        world.append(parent @ part)
    # Made contiguous here, in (B, J) order, so that the gradient coming back is contiguous in
    # (J, B) order again and each level's matmul backward takes its block without a copy.
    return torch.cat(world, dim=0).index_select(0, levels.joint_order).transpose(0, 1).contiguous()


def linear_blend_skinning(
    template: HandTemplate, rotations: Float[Tensor, "B J 3 3"], betas: Float[Tensor, "B S"]
) -> tuple[Float[Tensor, "B V 3"], Float[Tensor, "B J 3"]]:
    """Posed vertices and skeleton joints: ``smplx.lbs.lbs(betas, rotations, ..., pose2rot=False)``
    on the template's tensors (``betas`` may use the leading S of its shape components)."""
    b, j = rotations.shape[:2]
    v_shaped = template.v_template + blend_shapes(betas, template.shapedirs[..., : betas.shape[-1]])
    # smplx's vertices2joints is this product as an einsum, which transposes the vertices on
    # the way in and the joints on the way out (copies, forward and backward).
    rest_joints = torch.matmul(template.J_regressor, v_shaped)
    v_posed = v_shaped
    if template.has_pose_correctives:
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        pose_feature = (rotations[:, 1:] - eye).reshape(b, -1)
        v_posed = v_shaped + torch.matmul(pose_feature, template.posedirs).view(b, -1, 3)
    transforms = relative_transforms(rotations, rest_joints, template.kinematic_levels)
    # Only the top three rows of a transform move a point; both products below share one slice.
    top = transforms.view(b, j, 16)[..., :12]
    # The posed joint is G_j's translation: A_j applied to the rest joint.
    skeleton = torch.matmul(top.view(b * j, 3, 4), F.pad(rest_joints, (0, 1), value=1.0).view(b * j, 4, 1)).view(b, j, 3)
    blended = torch.matmul(template.weights, top).view(-1, 3, 4)
    vertices = torch.matmul(blended, F.pad(v_posed, (0, 1), value=1.0).view(-1, 4, 1)).view(b, -1, 3)
    return vertices, skeleton


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
    vertices, skeleton = linear_blend_skinning(template, rotations, betas)
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
        self._tensor_fields = tuple(f.name for f in dataclasses.fields(template) if f.name not in ("name", "side"))
        for name in self._tensor_fields:
            self.register_buffer(name, getattr(template, name), persistent=False)
        self._template = template

    @property
    def template(self) -> HandTemplate:
        """The template as currently held (after any ``.to()`` of the module).

        The same object from call to call (so what it caches, such as its kinematic levels, is
        computed once); it is rebuilt, and validated, only after a buffer was replaced.
        """
        held = self._template
        if any(getattr(held, name) is not self._buffers[name] for name in self._tensor_fields):
            held = self._template = dataclasses.replace(held, **{name: self._buffers[name] for name in self._tensor_fields})
        return held

    def _apply(self, fn, recurse: bool = True):
        """After ``.to()``/``.cuda()``: rebuild the template now and fill its caches.

        Filling them reads a tensor on the host; done here, it happens once, outside any
        ``torch.compile``d or graph-recorded call (where it would break the compiled graph).
        """
        module = super()._apply(fn, recurse)
        template = self.template
        template.has_pose_correctives, template.kinematic_levels  # noqa: B018 (fills the cached properties)
        return module

    def forward(
        self,
        global_orient: Float[Tensor, "B 3 3"],
        hand_pose: Float[Tensor, "B Jm1 3 3"],
        betas: Float[Tensor, "B S"],
        transl: Float[Tensor, "B 3"],
    ) -> HandOutput:
        """See :func:`hand_forward`."""
        return hand_forward(self.template, global_orient, hand_pose, betas, transl)
