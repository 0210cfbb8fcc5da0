"""Synthetic egocentric two-hand clips in the project's sequence format (docs/formats.md section 1).

A head-mounted camera watches both hands (open hand templates, random subject shape and skin)
grasp, open, turn, move fast, cross and leave the view over a procedural room; the frames are
a shaded mesh render (a small torch z-buffer rasteriser), with masks, boxes, ground truth and
estimator-like pseudo-labels, plus two static third-person cameras for novel views.
Appearance presets and switches (lighting, skin detail, bare arms, occluding objects, camera
effects) live in :mod:`.variants`.
Entry points: :func:`synthesize_clip` (``hand4dgs synth``) and :func:`ensure_default_clip`.
"""

from hand4dgs_ns.synthetic.clip import SynthConfig, SynthResult, build_scene, synthesize_clip
from hand4dgs_ns.synthetic.default_clip import default_clip_path, ensure_default_clip
from hand4dgs_ns.synthetic.variants import PRESETS, AppearanceConfig

__all__ = [
    "PRESETS",
    "AppearanceConfig",
    "SynthConfig",
    "SynthResult",
    "build_scene",
    "default_clip_path",
    "ensure_default_clip",
    "synthesize_clip",
]
