"""The held object of a dataset video, as a moving mesh that hand masks are drawn with.

H2O and ARCTIC film hands holding objects, and an object in front of a hand hides part of it.
The hand masks mark where the object is the nearest surface as an occluder (label 3, the
sequence format), which the image loss and the crop metrics leave out: a hand the model draws
under the object is then neither rewarded nor punished by the object's pixels.

- H2O annotates each frame's object by its 3D box (``obj_pose/``: class, then 21 points in the
  camera frame: centre, 8 corners, 12 edge midpoints; class 0 = no object). The object becomes
  its box: the convex hull of the corners, moved per frame by the rigid motion that best maps
  the first annotated corners onto that frame's (a box is larger than most objects in it, so
  a little background near the object is left out of the loss too).
- ARCTIC gives each object's mesh (``meta/object_vtemplates/<object>/mesh.obj``, millimetres)
  with a top and a bottom part (``parts.json``: per vertex, false for the top), and per frame
  (``raw_seqs/<sid>/<seq>.object.npy``) the articulation angle (radians), the rotation
  (axis-angle) and the translation (millimetres), world frame. The top part turns by the
  articulation angle about the object's -z axis, then the whole object is rotated and moved
  (as ARCTIC's own ``ObjectTensors`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.spatial import ConvexHull, QhullError

from hand4dgs_ns.geometry.alignment import kabsch_rotation
from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix

H2O_BOX_CORNERS = slice(1, 9)
"""The 8 corners among the 21 points of an H2O ``obj_pose`` line (after the class)."""
ARCTIC_ARTICULATION_AXIS = (0.0, 0.0, -1.0)
"""ARCTIC's top parts turn about this axis of the object's frame."""


@dataclass(frozen=True)
class ObjectTrack:
    """A rigid or two-part object through a video: one mesh, one rigid transform per part and frame."""

    rest_vertices: Float[np.ndarray, "N 3"]
    """Vertices in the object's frame, metres."""
    faces: Int[np.ndarray, "M 3"]
    """Triangles (vertex indices)."""
    vertex_part: Int[np.ndarray, " N"]
    """Which part moves each vertex (index into ``part_to_world``'s second axis)."""
    part_to_world: Float[np.ndarray, "F P 4 4"]
    """Each part's object-to-world transform per frame."""
    present: Bool[np.ndarray, " F"]
    """Frames where the object is annotated (elsewhere it is not drawn)."""

    def vertices(self, frames: Int[np.ndarray, " B"]) -> Float[np.ndarray, "B N 3"]:
        """World-frame vertices at the given frames."""
        transforms = self.part_to_world[frames][:, self.vertex_part]  # (B, N, 4, 4)
        return np.einsum("bnij,nj->bni", transforms[..., :3, :3], self.rest_vertices) + transforms[..., :3, 3]


def _rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.zeros((*rotation.shape[:-2], 4, 4))
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = rotation, translation, 1.0
    return out


def h2o_object_track(
    classes: Int[np.ndarray, " F"], points_cam: Float[np.ndarray, "F 21 3"], c2w: Float[np.ndarray, "F 4 4"]
) -> ObjectTrack | None:
    """The annotated object's box through an H2O video (``None`` if no frame has an object)."""
    corners_cam = points_cam[:, H2O_BOX_CORNERS]
    corners = np.einsum("fij,fnj->fni", c2w[:, :3, :3], corners_cam) + c2w[:, None, :3, 3]
    present = (classes > 0) & np.isfinite(corners).all(axis=(1, 2))
    if not present.any():
        return None
    reference = corners[int(np.argmax(present))]
    centre = reference.mean(axis=0)
    rest = reference - centre
    try:
        faces = ConvexHull(rest).simplices.astype(np.int64)
    except QhullError:  # a flat or collapsed box has no hull: nothing to draw
        return None
    # Per frame, the rotation taking the reference box onto that frame's corners (Kabsch).
    target = torch.from_numpy(np.where(present[:, None, None], corners, reference))
    centres = target.mean(dim=1, keepdim=True)
    rotation = kabsch_rotation(torch.from_numpy(rest)[None].expand_as(target), target - centres).numpy()
    part_to_world = _rigid(rotation, centres[:, 0].numpy())[:, None]
    return ObjectTrack(rest, faces, np.zeros(len(rest), np.int64), part_to_world, present)


def arctic_object_track(
    mesh_vertices_mm: Float[np.ndarray, "N 3"],
    faces: Int[np.ndarray, "M 3"],
    is_bottom: Bool[np.ndarray, " N"],
    params: Float[np.ndarray, "F 7"],
) -> ObjectTrack:
    """An ARCTIC object through a video: its template and its per-frame 7-number pose."""
    params = torch.from_numpy(np.asarray(params, np.float64))
    axis = params.new_tensor(ARCTIC_ARTICULATION_AXIS)
    rotation = axis_angle_to_matrix(params[:, 1:4])
    articulation = axis_angle_to_matrix(params[:, :1] * axis)
    translation = (params[:, 4:7] / 1000.0).numpy()
    top = _rigid((rotation @ articulation).numpy(), translation)
    bottom = _rigid(rotation.numpy(), translation)
    part_to_world = np.stack([top, bottom], axis=1)
    present = np.isfinite(params.numpy()).all(axis=1)
    return ObjectTrack(
        np.asarray(mesh_vertices_mm, np.float64) / 1000.0,
        np.asarray(faces, np.int64),
        np.asarray(is_bottom, bool).astype(np.int64),
        np.where(present[:, None, None, None], part_to_world, np.eye(4)),
        present,
    )
