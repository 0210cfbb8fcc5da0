"""Diffuse shading (``--pipeline.model.shading``): the SH basis, the two learned lights, and the network's colours."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hand4dgs_ns.gaussians import SphericalHarmonicLight, vertex_normals
from hand4dgs_ns.gaussians.shading import sh_basis
from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.network.hand_network import NetworkInputs

from tiny_network import tiny_inputs, twin_networks


def _unit_sphere(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


def test_the_basis_is_orthonormal_over_the_sphere():
    n = _unit_sphere(400_000)
    y = sh_basis(n).double()
    gram = 4.0 * math.pi * (y.T @ y) / n.shape[0]  # Monte Carlo integral over the sphere
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=0.02, rtol=0)


def test_a_clamped_cosine_light_is_represented_to_within_a_few_per_cent():
    # Irradiance of one distant light of unit strength from d: max(n.d, 0). Projected on bands 0-2
    # it is the well-known approximation the shading relies on (largest error about 10% of the peak,
    # at the terminator).
    d = F.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    n = _unit_sphere(400_000, seed=1)
    target = (n @ d).clamp(min=0)[:, None].expand(-1, 3)
    coefficients = 4.0 * math.pi * (sh_basis(n).double().T @ target) / n.shape[0]
    test = _unit_sphere(2_000, seed=2)
    fit = sh_basis(test).double() @ coefficients
    error = (fit - (test @ d).clamp(min=0)[:, None]).abs()
    assert error.mean() < 0.04 and error.max() < 0.12


def test_the_light_starts_uniform_and_white():
    light = SphericalHarmonicLight()
    n = _unit_sphere(50).float()[None]
    c2w = torch.eye(4)[None]
    torch.testing.assert_close(light(n, c2w), torch.ones(1, 50, 3))


def test_the_camera_light_moves_with_the_camera_and_the_world_light_does_not():
    light = SphericalHarmonicLight()
    with torch.no_grad():
        light.world.zero_()
        light.camera[2] = 1.0  # brightest where a normal points along camera +z (away from the lens)
    n_cam = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])  # facing the camera, facing away
    rotations = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.4, -1.1, 0.3], [2.0, 0.5, -0.7]]))
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, :3, :3] = rotations
    n_world = n_cam @ rotations.transpose(-1, -2)  # the same camera-frame normals, seen by three cameras
    out = light(n_world, c2w)
    torch.testing.assert_close(out, out[:1].expand_as(out))
    assert (out[:, 1] > out[:, 0]).all()

    with torch.no_grad():
        light.camera.zero_()
        light.world.zero_()
        light.world[0] = 1.0
        light.world[2] = 1.0  # brightest towards world +z, whatever the camera
    up = torch.tensor([[[0.0, 0.0, 1.0]]]).expand(3, 1, 3)
    torch.testing.assert_close(light(up, c2w), light(up, torch.eye(4).expand(3, 4, 4)))


def test_vertex_normals_point_out_of_a_closed_mesh():
    # A tetrahedron wound counter-clockwise seen from outside.
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    normals = vertex_normals(verts[None], faces)[0]
    outward = verts - verts.mean(dim=0)
    assert ((normals * outward).sum(-1) > 0).all()
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(4))


def _inputs(b: int) -> NetworkInputs:
    g = torch.Generator().manual_seed(3)
    c2w = torch.eye(4).repeat(b, 1, 1)
    c2w[:, :3, :3] = axis_angle_to_matrix(torch.randn(b, 3, generator=g) * 0.5)
    return tiny_inputs(torch.randn(b, 2, 4, 8, generator=g), c2w)


def test_shading_multiplies_the_colours_by_the_light_at_each_gaussians_normal():
    plain, shaded = twin_networks(shading=True)
    x = _inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(shaded(x).colors, plain(x).colors)  # uniform white light at first
        shaded.light.world[3] = 0.8  # more light towards world +x
        out, ref = shaded(x), plain(x)
    torch.testing.assert_close(out.vertices, ref.vertices)  # appearance only
    ratio = out.colors / ref.colors
    assert ratio.std() > 0.05  # the light now varies over the hands' surfaces
    # The ratio is the light at each Gaussian's normal: the normals come from the posed mesh.
    branch = shaded.branches[1]
    g = branch.num_gaussians
    normals = branch.gaussian_normals(out.vertices[:, 1])
    light = shaded.light(normals, x.c2w)
    torch.testing.assert_close(ratio[:, g:], light.detach(), rtol=1e-4, atol=1e-5)


def test_the_light_is_an_appearance_parameter_trained_with_the_gaussian_tables():
    _, shaded = twin_networks(shading=True)
    light = {id(p) for p in shaded.light.parameters()}
    assert light <= {id(p) for p in shaded.appearance_parameters()}
    assert light <= {id(p) for p in shaded.gaussian_parameters()}
    assert not light & {id(p) for p in shaded.pose_parameters()}
    shaded(_inputs(2)).colors.sum().backward()
    assert shaded.light.world.grad.abs().sum() > 0 and shaded.light.camera.grad.abs().sum() > 0
