"""The MANO-style hand template every hand source is turned into.

Conventions (shared by :mod:`hand4dgs_ns.hands.lbs`):

- Metres. ``J`` skeleton joints (MANO: 16, the open hand: 20) in a tree with ``parents[0] == -1``
  and every parent listed before its children; joint 0 is the wrist, which ``global_orient``
  rotates about.
- Rest-pose rotations are identity for every joint, expressed in the template's frame (as in
  MANO and smplx): a joint's rotation is relative to its parent, about axes of the rest frame.
- ``posedirs`` uses smplx's layout: row ``(j - 1) * 9 + 3 * a + b`` is the vertex offset per unit
  of ``R_j[a, b] - I[a, b]``, columns are ``3 * vertex + coordinate``.
- The 21 output joints are in OpenPose order (see :mod:`hand4dgs_ns`): the J skeleton joints
  followed by the 5 fingertip vertices (thumb, index, middle, ring, pinky) are picked by
  ``openpose_map``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from typing_extensions import assert_never

from hand4dgs_ns.errors import Hand4DGSError

if TYPE_CHECKING:
    from hand4dgs_ns.hands.lbs import KinematicLevels

HandSide = Literal["left", "right"]


@dataclass(frozen=True)
class HandTemplate:
    """A hand model as tensors, ready for :func:`hand4dgs_ns.hands.lbs.hand_forward`."""

    name: str
    """Where it comes from: ``"mano"`` or ``"open"``."""
    side: HandSide
    """Which hand the template models."""
    v_template: Float[Tensor, "V 3"]
    """Rest vertices at zero shape."""
    shapedirs: Float[Tensor, "V 3 S"]
    """Shape basis: ``v_shaped = v_template + shapedirs @ betas``."""
    posedirs: Float[Tensor, "P V3"]
    """Pose correctives, P = (J-1)*9 rows in smplx's layout (all zero when the source has none)."""
    J_regressor: Float[Tensor, "J V"]
    """Dense regressor: rest joints = ``J_regressor @ v_shaped``."""
    weights: Float[Tensor, "V J"]
    """Linear blend skinning weights; rows sum to one."""
    parents: Int[Tensor, " J"]
    """Parent of each joint (long); ``parents[0] == -1``."""
    faces: Int[Tensor, "F 3"]
    """Triangles (long), counter-clockwise seen from outside."""
    tip_vertex_ids: Int[Tensor, "5"]
    """Fingertip vertices (long): thumb, index, middle, ring, pinky."""
    openpose_map: Int[Tensor, "21"]
    """Indices (long) into ``cat([J skeleton joints, 5 tips])`` giving the OpenPose order."""
    hands_mean: Float[Tensor, " P3"]
    """Mean finger pose, (J-1)*3 axis-angle; added to the axis-angle hand pose (zeros when flat)."""
    uv: Float[Tensor, "V 2"] | None = None
    """Texture coordinates per vertex, or None when the source has none."""

    def __post_init__(self) -> None:
        v, j = self.v_template.shape[0], self.J_regressor.shape[0]
        expected = {
            "v_template": (v, 3),
            "shapedirs": (v, 3, self.shapedirs.shape[-1]),
            "posedirs": ((j - 1) * 9, v * 3),
            "J_regressor": (j, v),
            "weights": (v, j),
            "parents": (j,),
            "faces": (self.faces.shape[0], 3),
            "tip_vertex_ids": (5,),
            "openpose_map": (21,),
            "hands_mean": ((j - 1) * 3,),
        }
        if self.uv is not None:
            expected["uv"] = (v, 2)
        for field, shape in expected.items():
            actual = tuple(getattr(self, field).shape)
            if actual != shape:
                raise ValueError(f"HandTemplate {self.name}/{self.side}: {field} has shape {actual}, expected {shape}")

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        """Skeleton joints J (the output has 21 OpenPose joints whatever J is)."""
        return self.J_regressor.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    # Cached on the instance (not fields: ``replace``/``to`` give a fresh template that computes
    # them again). Each reads a tensor on the host once, which waits for a GPU; per call it would
    # stall every training step.
    @functools.cached_property
    def has_pose_correctives(self) -> bool:
        """Whether ``posedirs`` has any non-zero entry (else skinning skips the correctives)."""
        return bool(self.posedirs.any())

    @functools.cached_property
    def kinematic_levels(self) -> KinematicLevels:
        """``parents`` grouped by tree depth, for the skinning's level-by-level chain."""
        from hand4dgs_ns.hands.lbs import kinematic_levels  # lbs imports this module

        return kinematic_levels(self.parents)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> HandTemplate:
        """A copy on ``device`` with floating-point fields cast to ``dtype`` (index fields stay long)."""
        changes = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                changes[field.name] = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        return dataclasses.replace(self, **changes)


def load_template(
    source: Literal["open", "mano"],
    side: HandSide,
    mano_dir: Path | str | None = None,
    *,
    flat_hand_mean: bool = True,
    fix_left_shapedirs: bool = False,
) -> HandTemplate:
    """The template of one hand from ``source``.

    ``"open"`` is the shipped open hand (the flags do not apply: its mean pose is zero and it
    has no left-hand shape bug). ``"mano"`` reads ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` from
    ``mano_dir`` (default: ``$HAND4DGS_MANO_DIR``) with :func:`~hand4dgs_ns.hands.mano.load_mano`
    and the two flags.
    """
    # Imported here: both loaders build HandTemplates, so they import this module.
    from hand4dgs_ns.hands.mano import MANO_DIR_ENV, MANO_URL, load_mano, mano_dir_from_env
    from hand4dgs_ns.hands.open_hand import load_open_hand

    match source:
        case "open":
            return load_open_hand(side)
        case "mano":
            if mano_dir is None:
                mano_dir = mano_dir_from_env()
            if mano_dir is None:
                raise Hand4DGSError(
                    f"The MANO hand template needs the folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (from the MANO website, {MANO_URL}, after registering); pass it with --pipeline.model.mano-dir (or --mano-dir to hand4dgs commands) or set {MANO_DIR_ENV}."
                )
            path = Path(mano_dir) / f"MANO_{side.upper()}.pkl"
            return load_mano(path, flat_hand_mean=flat_hand_mean, fix_left_shapedirs=fix_left_shapedirs)
        case _:
            assert_never(source)
