"""Gaussians offset along the surface normal (``--pipeline.model.normal-offset-mm``): start on the
mesh, move along the normal only, within the bound, and are appearance parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tiny_network import tiny_inputs, twin_networks


@pytest.mark.parametrize("shading", [False, True])  # with shading the light's normals are passed on
def test_offsets_start_at_zero_and_move_gaussians_along_the_normal_within_the_bound(shading: bool):
    plain, offset = twin_networks(normal_offset_mm=2.0, shading=shading)
    x = tiny_inputs(torch.randn(3, 2, 4, 8))
    with torch.no_grad():
        torch.testing.assert_close(offset(x).means, plain(x).means)  # zero-initialised: on the mesh
        head = offset.branches[1].offset_mlp[-1]
        head.bias.fill_(50.0)  # saturated: every right-hand Gaussian 2 mm out
        out, ref = offset(x), plain(x)
    g = out.means.shape[1] // 2
    torch.testing.assert_close(out.means[:, :g], ref.means[:, :g])  # the left hand keeps its own decoder
    torch.testing.assert_close(out.vertices, ref.vertices)  # the mesh and joints stay where they are
    shift = out.means[:, g:] - ref.means[:, g:]
    torch.testing.assert_close(shift.norm(dim=-1), torch.full(shift.shape[:2], 2e-3))
    branch = offset.branches[1]
    v_world = out.vertices[:, 1]
    normals = branch.gaussian_normals(v_world)
    cosine = (F.normalize(shift, dim=-1) * normals).sum(dim=-1)  # a 2 mm difference of float32 positions
    assert cosine.min() > 0.9999


def test_offsets_are_appearance_parameters_the_image_loss_trains():
    _, offset = twin_networks(normal_offset_mm=3.0)
    decoder = {id(p) for p in offset.branches[0].offset_mlp.parameters()}
    assert decoder <= {id(p) for p in offset.appearance_parameters()}
    assert not decoder & {id(p) for p in offset.pose_parameters()}
    offset(tiny_inputs(torch.randn(2, 2, 4, 8))).means.sum().backward()
    assert offset.branches[0].offset_mlp[-1].weight.grad.abs().sum() > 0
