"""Mesh-guided Gaussians: layout, positions, rotations, interpolation, gradients."""

from __future__ import annotations

import pytest
import torch

from hand4dgs_ns.gaussians import (
    face_frames,
    gaussian_means,
    gaussian_quats,
    interpolate_vertex_attributes,
    make_layout,
)
from hand4dgs_ns.geometry.rotations import quaternion_to_matrix
from hand4dgs_ns.render.scenes import ellipsoid_mesh


@pytest.fixture
def mesh() -> tuple[torch.Tensor, torch.Tensor]:
    verts, faces = ellipsoid_mesh((0.04, 0.08, 0.02), n_lat=9, n_lon=10)
    noise = 0.003 * torch.randn(verts.shape, generator=torch.Generator().manual_seed(1))
    return (verts + noise).double(), faces


def _face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    v0, v1, v2 = (verts[..., faces[:, k], :] for k in range(3))
    n = torch.linalg.cross(v1 - v0, v2 - v0)
    return n / n.norm(dim=-1, keepdim=True)


def test_layout_counts_and_order(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=10, seed=0)
    num_v, num_f = verts.shape[0], faces.shape[0]
    assert layout.num_gaussians == num_v + 10 * num_f
    assert layout.face_ids.dtype == torch.long
    assert torch.equal(layout.face_ids[num_v:], torch.arange(num_f).repeat_interleave(10))
    bary = layout.barycentrics
    assert (bary >= 0).all()
    torch.testing.assert_close(bary.sum(-1), torch.ones(layout.num_gaussians))
    # Vertex Gaussians: one-hot on a face that contains the vertex, at that vertex's corner.
    vb = bary[:num_v]
    assert torch.equal(vb.max(-1).values, torch.ones(num_v))
    corner = faces[layout.face_ids[:num_v], vb.argmax(-1)]
    assert torch.equal(corner, torch.arange(num_v))


def test_layout_deterministic_per_seed(mesh):
    verts, faces = mesh
    a = make_layout(faces, verts.shape[0], seed=3)
    b = make_layout(faces, verts.shape[0], seed=3)
    c = make_layout(faces, verts.shape[0], seed=4)
    assert torch.equal(a.barycentrics, b.barycentrics) and torch.equal(a.face_ids, b.face_ids)
    assert not torch.equal(a.barycentrics, c.barycentrics)


def test_face_samples_uniform_on_triangle():
    faces = torch.tensor([[0, 1, 2]])
    bary = make_layout(faces, 3, per_face=40000, seed=0).barycentrics[3:]
    torch.testing.assert_close(bary.mean(0), torch.full((3,), 1 / 3), atol=0.01, rtol=0)
    # Uniform on a triangle: P(b0 > 1/2) = (1/2)^2 (a naive draw of sqrt-free u gives 1/2).
    assert abs((bary[:, 0] > 0.5).float().mean().item() - 0.25) < 0.01


def test_positions_lie_on_their_faces(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=10, seed=0)
    means = gaussian_means(verts, faces, layout)
    tri = verts[faces[layout.face_ids]]  # (G, 3, 3)
    normals = _face_normals(verts, faces)[layout.face_ids]
    off_plane = ((means - tri[:, 0]) * normals).sum(-1)
    # The barycentrics are stored in float32, so their sum is 1 to ~1e-7: nm off an 8-cm mesh.
    torch.testing.assert_close(off_plane, torch.zeros_like(off_plane), atol=1e-8, rtol=0)
    # Recover barycentrics from the positions: all non-negative means inside the triangle.
    e = torch.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]], dim=-1)  # (G, 3, 2)
    st = torch.linalg.lstsq(e, (means - tri[:, 0])[..., None]).solution[..., 0]
    recovered = torch.cat([1 - st.sum(-1, keepdim=True), st], dim=-1)
    assert (recovered > -1e-5).all()
    torch.testing.assert_close(recovered, layout.barycentrics.double(), atol=1e-5, rtol=0)


def test_vertex_gaussians_sit_exactly_on_vertices(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=3, seed=0)
    batch = verts + torch.randn(2, *verts.shape, dtype=verts.dtype)
    for v in (verts, batch, batch.float()):
        assert torch.equal(gaussian_means(v, faces, layout)[..., : verts.shape[0], :], v)


def test_rotation_maps_local_z_to_face_normal(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=2, seed=0)
    rot = quaternion_to_matrix(gaussian_quats(verts, faces, layout))
    normals = _face_normals(verts, faces)[layout.face_ids]
    torch.testing.assert_close(rot[..., 2], normals, atol=1e-9, rtol=0)
    v0, v1 = verts[faces[layout.face_ids, 0]], verts[faces[layout.face_ids, 1]]
    edge = (v1 - v0) / (v1 - v0).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(rot[..., 0], edge, atol=1e-9, rtol=0)
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(rot.shape[0], dtype=rot.dtype))


def test_face_frames_columns(mesh):
    verts, faces = mesh
    frames = face_frames(verts, faces)
    t, b, n = frames.unbind(-1)
    torch.testing.assert_close(n, _face_normals(verts, faces), atol=1e-12, rtol=0)
    torch.testing.assert_close(b, torch.linalg.cross(n, t), atol=1e-12, rtol=0)


def test_batched_leading_dims_match_single(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=2, seed=0)
    batch = verts + 0.01 * torch.randn(2, 3, *verts.shape, dtype=verts.dtype)
    q = gaussian_quats(batch, faces, layout)
    assert q.shape == (2, 3, layout.num_gaussians, 4)
    torch.testing.assert_close(q[1, 2], gaussian_quats(batch[1, 2], faces, layout))


def test_interpolation_of_a_linear_attribute_is_linear(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=5, seed=0)
    a = torch.randn(3, 7, dtype=verts.dtype)
    attr = verts @ a + 1.5
    got = interpolate_vertex_attributes(attr, faces, layout)
    torch.testing.assert_close(got, gaussian_means(verts, faces, layout) @ a + 1.5)


def test_gradients_flow_to_every_vertex(mesh):
    verts, faces = mesh
    layout = make_layout(faces, verts.shape[0], per_face=4, seed=0)
    verts = verts.clone().requires_grad_(True)
    emb = torch.randn(verts.shape[0], 8, dtype=verts.dtype, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    means = gaussian_means(verts, faces, layout)
    quats = gaussian_quats(verts, faces, layout)
    inter = interpolate_vertex_attributes(emb, faces, layout)
    loss = sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum() for x in (means, quats, inter))
    loss.backward()
    for grad in (verts.grad, emb.grad):
        assert torch.isfinite(grad).all()
        assert (grad.abs().sum(-1) > 0).all()


def test_rotation_gradient_matches_finite_differences(mesh):
    verts, faces = mesh
    cap = faces[:6]  # the fan around the north pole: vertices 0..7, all used
    num_v = int(cap.max()) + 1
    layout = make_layout(cap, num_v, per_face=1)
    used = verts[:num_v].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: gaussian_quats(v, cap, layout), (used,))


def test_bad_meshes_are_rejected():
    with pytest.raises(ValueError, match="vertex 3 belongs to no face"):
        make_layout(torch.tensor([[0, 1, 2]]), 4)
    with pytest.raises(ValueError, match=r"shape \(F, 3\)"):
        make_layout(torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="face indices"):
        make_layout(torch.tensor([[0, 1, 5]]), 3)
