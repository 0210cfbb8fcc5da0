"""Each frame's per-frame hand estimate (a clip's pseudo-labels) as a network input.

The paper's backbone is HaMeR's ViT, so its tokens already hold what HaMeR's own head decodes
from them: a per-frame estimate of each hand. A backbone trained from scratch on a few hundred
subjects holds far less. With ``--pipeline.model.estimate-input`` the network also reads that
estimate (the clip's ``pseudo_joints``: HaMeR's output on real video) as one more token per hand,
so the temporal convolution refines the estimator's hands over the window as the paper's network
refines HaMeR's features.

Encoding of one hand in one frame (:data:`ESTIMATE_DIM` numbers), in that frame's camera frame
(OpenCV axes) and relative to its box, the way the network's translation head places a hand
(:func:`hand4dgs_ns.network.hand_branch.box_translation`):

- ``0:2`` the wrist's ray offset from the box-centre ray (x/z, y/z minus the box centre's), in
  units of depth; ``2`` the log of the wrist's depth over the box prior's depth;
- ``3:63`` the 20 other joints relative to the wrist (OpenPose order), over :data:`EXTENT_M`;
- ``63`` 1 where the estimate is usable, else 0 (and every other entry 0).

x entries change sign in the mirror (:data:`MIRROR_SIGNS`), so a left hand's estimate is read
as a right hand's, as its crop is.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.geometry.cameras import box_prior, invert_rigid, transform_points

ESTIMATE_DIM = 64
"""Numbers per hand and frame."""
EXTENT_M = 0.18
"""Scale of the encoding (a typical hand's extent, metres): normalisation only."""
_WRIST = 0


# x of the ray offset (entry 0) and of every relative joint (3, 6, ..., 60).
MIRROR_SIGNS = tuple(-1.0 if i == 0 or (3 <= i < 63 and i % 3 == 0) else 1.0 for i in range(ESTIMATE_DIM))
"""Multiplies an encoding to the same hand seen in the mirror ``x -> -x`` of the camera."""


def encode_estimates(
    joints_world: Float[Tensor, "F 2 21 3"],
    usable: Bool[Tensor, "F 2"],
    c2w: Float[Tensor, "F 4 4"],
    K: Float[Tensor, "F 3 3"],
    bbox: Float[Tensor, "F 2 4"],
) -> Float[Tensor, "F 2 64"]:
    """Encodes both hands' estimates of every frame (see the module docstring); zeros where not usable."""
    cam = transform_points(invert_rigid(c2w.float())[:, None], joints_world.float())  # (F, 2, 21, 3)
    wrist = cam[..., _WRIST, :]
    depth = wrist[..., 2].clamp(min=1e-3)
    box_ray, prior_depth = box_prior(bbox, K[:, None], EXTENT_M)
    ray = wrist[..., :2] / depth[..., None] - box_ray
    relative = (cam - wrist[..., None, :])[..., 1:, :] / EXTENT_M
    flag = usable.float()
    code = torch.cat([ray, (depth / prior_depth).log()[..., None], relative.flatten(-2), torch.ones_like(depth)[..., None]], dim=-1)
    return code * flag[..., None]
