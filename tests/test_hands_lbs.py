"""The one skinning path: equal to smplx's lbs, any bone count, gradients, batching, the module wrapper, shape checks."""

from __future__ import annotations

import math

import pytest
import torch
from smplx.lbs import lbs

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands import HandLayer, HandTemplate, hand_forward, hand_forward_axis_angle, load_open_hand
from hand4dgs_ns.hands.lbs import kinematic_levels, linear_blend_skinning

F64 = torch.float64
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Levels of sizes 1, 3, 5, 1 whose parents are all, an unordered selection of, and one of the previous level.
BRANCHY_PARENTS = (-1, 0, 0, 0, 2, 2, 1, 3, 3, 4)


def stick_template(dtype=F64) -> HandTemplate:
    """A 3-bone chain along +x (joints at x = 0, 1, 2) with one rigidly attached vertex per bone
    plus an end vertex; J = 3, so nothing MANO-sized is assumed."""
    verts = torch.tensor([[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0], [3.0, 0, 0]], dtype=dtype)
    weights = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=dtype)
    # Rows summing to one that put the joints at x = 0, 1, 2.
    regressor = torch.tensor([[1.5, -0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0]], dtype=dtype)
    return HandTemplate(
        name="stick",
        side="right",
        v_template=verts,
        shapedirs=torch.stack([verts, torch.zeros_like(verts)], dim=-1),  # beta 0 scales the stick
        posedirs=torch.zeros(2 * 9, 12, dtype=dtype),
        J_regressor=regressor,
        weights=weights,
        parents=torch.tensor([-1, 0, 1]),
        faces=torch.tensor([[0, 1, 2], [1, 2, 3]]),
        tip_vertex_ids=torch.tensor([3, 3, 3, 3, 3]),
        openpose_map=torch.tensor([0] + [1, 2, 3, 4] * 5),
        hands_mean=torch.zeros(6, dtype=dtype),
    )


def random_template(parents: tuple[int, ...], seed: int, num_vertices: int = 40, num_betas: int = 6) -> HandTemplate:
    """A float64 template with random (normalised) weights and regressor and non-zero pose
    correctives, on any tree with at least 16 joints (the OpenPose map needs J + 5 >= 21)."""
    g = torch.Generator().manual_seed(seed)
    j, v = len(parents), num_vertices

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=F64)

    weights = rand(v, j) ** 4
    regressor = rand(j, v) ** 4
    return HandTemplate(
        name="random",
        side="right",
        v_template=0.1 * torch.randn(v, 3, generator=g, dtype=F64),
        shapedirs=0.01 * torch.randn(v, 3, num_betas, generator=g, dtype=F64),
        posedirs=0.01 * torch.randn((j - 1) * 9, v * 3, generator=g, dtype=F64),
        J_regressor=regressor / regressor.sum(dim=1, keepdim=True),
        weights=weights / weights.sum(dim=1, keepdim=True),
        parents=torch.tensor(parents),
        faces=torch.randint(0, v, (10, 3), generator=g),
        tip_vertex_ids=torch.randperm(v, generator=g)[:5],
        openpose_map=torch.randperm(j + 5, generator=g)[:21],
        hands_mean=torch.zeros((j - 1) * 3, dtype=F64),
    )


def identity_inputs(t: HandTemplate, batch: int, dtype=F64):
    eye = torch.eye(3, dtype=dtype)
    return (
        eye.expand(batch, 3, 3),
        eye.expand(batch, t.num_joints - 1, 3, 3),
        torch.zeros(batch, t.num_betas, dtype=dtype),
        torch.zeros(batch, 3, dtype=dtype),
    )


def test_any_bone_count_known_answer():
    t = stick_template()
    go, hp, betas, transl = identity_inputs(t, 1)
    quarter = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    hp = hp.clone()
    hp[0, 0] = quarter  # bend at joint 1 (x = 1) by 90 degrees about +z
    transl = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    betas = torch.tensor([[1.0, 0.0]], dtype=F64)  # doubles the stick: joints at x = 0, 2, 4
    out = hand_forward(t, go, hp, betas, transl)
    expected = torch.tensor([[1.0, 0, 1], [2, 1, 1], [2, 3, 1], [2, 4, 1]], dtype=F64)
    torch.testing.assert_close(out.vertices[0], expected)
    # OpenPose slots 0-3: the three joints, then the tip vertex.
    torch.testing.assert_close(out.joints[0, :4], torch.tensor([[0.0, 0, 1], [2, 0, 1], [2, 2, 1], [2, 4, 1]], dtype=F64))


@pytest.fixture(scope="module")
def right_hand() -> HandTemplate:
    return load_open_hand("right").to(dtype=F64)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("which", ["open", "mano_like", "branchy"])
def test_skinning_equals_smplx_lbs_with_gradients(right_hand, which, batch):
    t = {"open": right_hand, "mano_like": random_template(MANO_PARENTS, seed=3), "branchy": random_template(BRANCHY_PARENTS + (0,) * 6, seed=4)}[which]
    assert t.has_pose_correctives == (which != "open")
    g = torch.Generator().manual_seed(batch)
    rotations = axis_angle_to_matrix(0.6 * torch.randn(batch, t.num_joints, 3, generator=g, dtype=F64)).requires_grad_()
    betas = torch.randn(batch, t.num_betas - 1, generator=g, dtype=F64).requires_grad_()
    ours = linear_blend_skinning(t, rotations, betas)
    theirs = lbs(betas, rotations, t.v_template, t.shapedirs[..., :-1], t.posedirs, t.J_regressor, t.parents, t.weights, pose2rot=False)
    # A random scalar function of both outputs, so every vertex and joint carries gradient.
    weights = [torch.randn(x.shape, generator=g, dtype=F64) for x in theirs]
    grads = []
    for vertices, joints in (ours, theirs):
        torch.testing.assert_close(vertices, theirs[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(joints, theirs[1], atol=1e-10, rtol=0)
        scalar = (vertices * weights[0]).sum() + (joints * weights[1]).sum()
        grads.append(torch.autograd.grad(scalar, (rotations, betas)))
    assert grads[0][0].abs().max() > 1e-3 and grads[0][1].abs().max() > 1e-3
    for ours_grad, theirs_grad in zip(*grads):
        torch.testing.assert_close(ours_grad, theirs_grad, atol=1e-10, rtol=0)


def test_kinematic_levels_group_joints_by_depth():
    open_levels = kinematic_levels(load_open_hand("right").parents)
    assert open_levels.sizes == (1, 5, 5, 5, 4)
    assert open_levels.level_order.tolist() == [0, 1, 4, 8, 12, 16, 2, 5, 9, 13, 17, 3, 6, 10, 14, 18, 7, 11, 15, 19]
    # The thumb has one bone fewer: the deepest level, the long fingers' last bones, hangs from
    # the last four joints of the level before.
    assert open_levels.parent_slots == (None, None, None, slice(1, 5))
    assert kinematic_levels(torch.tensor(MANO_PARENTS)).sizes == (1, 5, 5, 5)
    branchy = kinematic_levels(torch.tensor(BRANCHY_PARENTS))
    assert branchy.sizes == (1, 3, 5, 1)
    assert branchy.parent_slots[0] is None and branchy.parent_slots[1].tolist() == [1, 1, 0, 2, 2] and branchy.parent_slots[2] == slice(0, 1)
    assert branchy.level_order[branchy.joint_order].tolist() == list(range(len(BRANCHY_PARENTS)))
    for bad in ((0, 0, 1), (-1, 2, 0), (-1, 0, -1)):
        with pytest.raises(ValueError, match="parents"):
            kinematic_levels(torch.tensor(bad))


def test_hand_layer_keeps_one_template_until_moved():
    layer = HandLayer(load_open_hand("right"))
    held = layer.template
    assert layer.template is held and not held.has_pose_correctives
    levels = held.kinematic_levels
    assert layer.template.kinematic_levels is levels  # built once, not per call
    layer.to(F64)
    moved = layer.template
    assert moved is not held and moved.v_template.dtype == F64 and layer.template is moved


def test_gradcheck_float64(right_hand):
    t = right_hand
    g = torch.Generator().manual_seed(0)
    inputs = (
        0.3 * torch.randn(2, 3, generator=g, dtype=F64),
        0.2 * torch.randn(2, (t.num_joints - 1) * 3, generator=g, dtype=F64),
        torch.randn(2, t.num_betas, generator=g, dtype=F64),
        0.1 * torch.randn(2, 3, generator=g, dtype=F64),
    )
    inputs = tuple(x.requires_grad_() for x in inputs)
    some_vertices = torch.randperm(t.num_vertices, generator=g)[:64]

    def f(*args):
        out = hand_forward_axis_angle(t, *args)
        return out.vertices[:, some_vertices], out.joints

    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)  # the full check takes ~20 s here


def test_gradcheck_float64_full_on_a_small_template():
    t = stick_template()
    g = torch.Generator().manual_seed(0)
    inputs = tuple(
        x.requires_grad_()
        for x in (
            torch.randn(2, 3, generator=g, dtype=F64),
            torch.randn(2, 6, generator=g, dtype=F64),
            torch.randn(2, 2, generator=g, dtype=F64),
            torch.randn(2, 3, generator=g, dtype=F64),
        )
    )

    def f(*args):
        out = hand_forward_axis_angle(t, *args)
        return out.vertices, out.joints

    assert torch.autograd.gradcheck(f, inputs)


def test_rotation_and_axis_angle_paths_agree(right_hand):
    t = right_hand
    g = torch.Generator().manual_seed(1)
    go, hp = torch.randn(3, 3, generator=g, dtype=F64), 0.3 * torch.randn(3, 57, generator=g, dtype=F64)
    betas, transl = torch.randn(3, 10, generator=g, dtype=F64), torch.randn(3, 3, generator=g, dtype=F64)
    a = hand_forward_axis_angle(t, go, hp, betas, transl)
    b = hand_forward(t, axis_angle_to_matrix(go), axis_angle_to_matrix(hp.view(3, 19, 3)), betas, transl)
    torch.testing.assert_close(a.vertices, b.vertices)
    torch.testing.assert_close(a.joints, b.joints)
    # Batched equals one by one; translation moves everything rigidly.
    single = hand_forward_axis_angle(t, go[1:2], hp[1:2], betas[1:2], transl[1:2])
    torch.testing.assert_close(single.vertices[0], a.vertices[1])
    moved = hand_forward_axis_angle(t, go, hp, betas, transl + 1.0)
    torch.testing.assert_close(moved.joints, a.joints + 1.0)


def test_global_orient_turns_about_the_wrist(right_hand):
    go, hp, betas, transl = identity_inputs(right_hand, 1)
    rest = hand_forward(right_hand, go, hp, betas, transl)
    turn = axis_angle_to_matrix(torch.tensor([[0.3, -1.0, 0.5]], dtype=F64))
    turned = hand_forward(right_hand, turn, hp, betas, transl)
    torch.testing.assert_close(turned.vertices[0], rest.vertices[0] @ turn[0].T, atol=1e-4, rtol=0)  # wrist ~ origin
    assert turned.joints[0, 0].norm() < 1e-4


def test_fewer_betas_use_the_leading_components(right_hand):
    go, hp, _, transl = identity_inputs(right_hand, 2)
    betas = torch.randn(2, 4, dtype=F64)
    padded = torch.cat([betas, torch.zeros(2, 6, dtype=F64)], dim=1)
    torch.testing.assert_close(hand_forward(right_hand, go, hp, betas, transl).vertices, hand_forward(right_hand, go, hp, padded, transl).vertices)


def test_hand_layer_holds_non_persistent_buffers():
    template = load_open_hand("left")
    layer = HandLayer(template)
    assert layer.state_dict() == {}
    layer = layer.to(F64)
    assert layer.template.v_template.dtype == F64 and layer.template.faces.dtype == torch.long and layer.template.side == "left"
    inputs = identity_inputs(template, 2)
    inputs[2].normal_()
    torch.testing.assert_close(layer(*inputs).vertices, hand_forward(template.to(dtype=F64), *inputs).vertices)


def test_template_to_keeps_index_fields_long(right_hand):
    t32 = right_hand.to(dtype=torch.float32)
    assert t32.v_template.dtype == torch.float32 and t32.uv.dtype == torch.float32
    assert all(x.dtype == torch.long for x in (t32.parents, t32.faces, t32.tip_vertex_ids, t32.openpose_map))


def test_bad_shapes_and_dtypes_are_refused(right_hand):
    go, hp, betas, transl = identity_inputs(right_hand, 2)
    with pytest.raises(ValueError, match="hand_pose"):
        hand_forward(right_hand, go, hp[:, :15], betas, transl)
    with pytest.raises(ValueError, match="betas"):
        hand_forward(right_hand, go, hp, torch.zeros(2, 11, dtype=F64), transl)
    with pytest.raises(ValueError, match="dtype"):
        hand_forward(right_hand, go.float(), hp.float(), betas.float(), transl.float())
    with pytest.raises(ValueError, match="weights"):
        stick = stick_template()
        HandTemplate(**{**{f: getattr(stick, f) for f in stick.__dataclass_fields__}, "weights": torch.zeros(4, 2, dtype=F64)})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    layer = HandLayer(load_open_hand("right"))
    g = torch.Generator().manual_seed(2)
    aa = 0.3 * torch.randn(4, layer.template.num_joints, 3, generator=g)
    inputs = (axis_angle_to_matrix(aa[:, 0]), axis_angle_to_matrix(aa[:, 1:]), torch.randn(4, 10, generator=g), torch.randn(4, 3, generator=g))
    cpu = layer(*inputs)
    gpu_inputs = [x.cuda().requires_grad_() for x in inputs]
    gpu = layer.cuda()(*gpu_inputs)
    assert gpu.vertices.is_cuda
    torch.testing.assert_close(gpu.vertices.cpu(), cpu.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(gpu.joints.cpu(), cpu.joints, atol=1e-5, rtol=0)
    gpu.vertices.square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in gpu_inputs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_forward_backward_never_waits_for_the_device():
    layer = HandLayer(load_open_hand("right")).cuda()
    inputs = [x.cuda().requires_grad_() for x in identity_inputs(layer.template, 4, dtype=torch.float32)]
    layer(*inputs).vertices.sum().backward()  # builds the template's kinematic levels (one read of parents)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = layer(*inputs)
        (out.vertices.square().sum() + out.joints.square().sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
