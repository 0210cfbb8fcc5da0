"""Both hands of one frame as one triangle mesh file (PLY or OBJ), written with trimesh.

The left hand's vertices come first, then the right hand's (slot order), so every frame's file
has the same vertex count and order and a sequence of them is a 4D mesh; an absent hand is kept
(its predicted pose) so that the order holds: ``hands.npz``'s ``valid`` says which hands are seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh
from jaxtyping import Float, Int
from typing_extensions import assert_never

MeshFormat = Literal["ply", "obj"]


def hands_mesh(vertices: Float[np.ndarray, "2 V 3"], faces: Sequence[Int[np.ndarray, "F 3"]]) -> trimesh.Trimesh:
    """One mesh of both hands: slot 0's vertices and faces, then slot 1's (faces offset past slot 0)."""
    if vertices.ndim != 3 or vertices.shape[0] != len(faces) or vertices.shape[2] != 3:
        raise ValueError(f"hands_mesh: vertices have shape {vertices.shape} for {len(faces)} face arrays, expected (hands, V, 3)")
    v = vertices.shape[1]
    all_faces = np.concatenate([np.asarray(f, np.int64) + slot * v for slot, f in enumerate(faces)])
    # process=False: keep every vertex and its order (trimesh would merge coincident ones).
    return trimesh.Trimesh(vertices.reshape(-1, 3), all_faces, process=False)


def write_hands_mesh(path: Path, mesh: trimesh.Trimesh, mesh_format: MeshFormat) -> None:
    """Writes ``mesh`` to ``path`` as binary PLY or as OBJ."""
    if mesh_format == "ply":
        data = mesh.export(file_type="ply", encoding="binary")
    elif mesh_format == "obj":
        data = mesh.export(file_type="obj", include_normals=False, include_texture=False)
    else:
        assert_never(mesh_format)
    Path(path).write_bytes(data if isinstance(data, bytes) else data.encode())
