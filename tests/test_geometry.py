"""Rotation and camera conventions: round trips, known values, gradients."""

import math

import pytest
import torch
from smplx.lbs import batch_rodrigues

from hand4dgs_ns.geometry.cameras import (
    invert_rigid,
    opencv_to_opengl_c2w,
    opengl_to_opencv_c2w,
    project_points,
    transform_points,
)
from hand4dgs_ns.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
)


def random_rotations(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=dtype) * 2.0)


def test_axis_angle_matches_smplx_rodrigues():
    aa = torch.randn(64, 3, dtype=torch.float64) * 2
    torch.testing.assert_close(axis_angle_to_matrix(aa), batch_rodrigues(aa), atol=1e-6, rtol=0)


def test_axis_angle_known_value_and_zero():
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64))
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_quaternion_round_trip_including_half_turns():
    rots = torch.cat([random_rotations(200), axis_angle_to_matrix(torch.tensor([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi]], dtype=torch.float64))])
    q = matrix_to_quaternion(rots)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q), dtype=torch.float64))
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(quaternion_to_matrix(q), rots, atol=1e-9, rtol=0)


def test_quaternion_is_wxyz():
    q = matrix_to_quaternion(axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])))
    torch.testing.assert_close(q, torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]))


def test_6d_round_trip_and_gram_schmidt():
    rots = random_rotations(50)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(rots)), rots)
    out = rotation_6d_to_matrix(torch.randn(20, 6, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(20, 3, 3)
    torch.testing.assert_close(out.transpose(-1, -2) @ out, eye)
    torch.testing.assert_close(torch.linalg.det(out), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("fn", [rotation_6d_to_matrix, lambda x: matrix_to_quaternion(rotation_6d_to_matrix(x))])
def test_rotation_gradcheck(fn):
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


def test_opencv_opengl_round_trip_and_axes():
    c2w = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    c2w[:, :3, :3] = random_rotations(5)
    c2w[:, :3, 3] = torch.randn(5, 3, dtype=torch.float64)
    gl = opencv_to_opengl_c2w(c2w)
    torch.testing.assert_close(opengl_to_opencv_c2w(gl), c2w)
    # A point in front of the OpenCV camera (z > 0) is at negative z in the OpenGL camera frame.
    p_world = transform_points(c2w, torch.tensor([[[0.1, -0.2, 2.0]]], dtype=torch.float64).expand(5, 1, 3))
    p_gl = transform_points(invert_rigid(gl), p_world)
    torch.testing.assert_close(p_gl[..., 0, :], torch.tensor([0.1, 0.2, -2.0], dtype=torch.float64).expand(5, 3))


def test_invert_rigid_and_projection():
    t = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    t[:, :3, :3] = random_rotations(4, seed=3)
    t[:, :3, 3] = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(invert_rigid(t) @ t, torch.eye(4, dtype=torch.float64).expand(4, 4, 4))
    K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    uv = project_points(K, torch.tensor([[0.0, 0.0, 1.0], [0.5, -0.2, 2.0]]))
    torch.testing.assert_close(uv, torch.tensor([[50.0, 40.0], [75.0, 30.0]]))



def test_kabsch_recovers_a_rotation_and_mean_rotation_averages():
    from hand4dgs_ns.geometry.alignment import kabsch_rotation, mean_rotation

    r = random_rotations(1, seed=9)[0]
    pts = torch.randn(21, 3, dtype=torch.float64)
    torch.testing.assert_close(kabsch_rotation(pts, pts @ r.T + torch.tensor([1.0, 2, 3], dtype=torch.float64)), r)
    small = axis_angle_to_matrix(torch.tensor([[0.0, 0, 0.1], [0.0, 0, -0.1]], dtype=torch.float64))
    torch.testing.assert_close(mean_rotation(r @ small), r)
    # Invalid entries do not count.
    torch.testing.assert_close(mean_rotation(torch.stack([r, small[0]]), torch.tensor([True, False])), r)


def test_look_at_puts_the_target_at_the_image_centre_upright():
    from hand4dgs_ns.geometry.camera_paths import look_at
    from hand4dgs_ns.geometry.cameras import invert_rigid, project_points, transform_points

    eye, target, up = torch.tensor([0.3, -0.2, -0.5]), torch.tensor([0.0, 0.1, 0.4]), torch.tensor([0.0, -1.0, 0.0])
    c2w = look_at(eye, target, up)
    R = c2w[:3, :3]
    torch.testing.assert_close(R.T @ R, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(R) > 0
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    w2c = invert_rigid(c2w)
    torch.testing.assert_close(project_points(K, transform_points(w2c, target[None])), torch.tensor([[50.0, 40.0]]), atol=1e-4, rtol=0)
    above = transform_points(w2c, (target + 0.1 * up)[None])[0]
    assert above[1] < 0, "a point above the target appears above the image centre (smaller y)"


def test_orbit_starts_at_the_camera_and_keeps_its_distance():
    from hand4dgs_ns.geometry.camera_paths import orbit

    start = torch.eye(4)
    start[:3, 3] = torch.tensor([0.0, 0.0, -0.6])  # looking along +z at the origin, y down
    centre = torch.tensor([0.05, 0.0, 0.0])
    angles = torch.linspace(0, 2 * torch.pi, 9)
    cams = orbit(start, centre, angles, distance=1.5)
    torch.testing.assert_close(cams[0, :3, 3], centre + (start[:3, 3] - centre) * 1.5, atol=1e-6, rtol=0)
    radii = (cams[:, :3, 3] - centre).norm(dim=-1)
    torch.testing.assert_close(radii, radii[:1].expand_as(radii), atol=1e-5, rtol=0)
    torch.testing.assert_close(cams[-1], cams[0], atol=1e-5, rtol=0)  # a full turn comes back
    heights = cams[:, 1, 3]  # the up axis is -y: the orbit stays level
    torch.testing.assert_close(heights, torch.zeros_like(heights), atol=1e-6, rtol=0)
    forward = cams[:, :3, 2]
    to_centre = torch.nn.functional.normalize(centre - cams[:, :3, 3], dim=-1)
    torch.testing.assert_close(forward, to_centre, atol=1e-5, rtol=0)
