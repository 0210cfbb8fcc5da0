"""Appearance variants of the synthetic clips: one switch per effect a real camera shows, and named presets.

A benchmark is run per variant by regenerating the same seeds under another preset: the
subject, room, motion, head path and labels stay the same (their random draws come from
their own streams), only the pixels change. The default preset reproduces the original
generator exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, Optional, get_args

LightingModel = Literal["head-lamp", "directional", "flat", "coloured"]
ArmsChoice = Literal["sampled", "bare"]
Preset = Literal["default", "studio", "harsh", "coloured", "phone", "occluded", "all"]


@dataclass(frozen=True)
class AppearanceConfig:
    """Switches for lighting, skin, arms, camera effects and occluding objects.

    As overrides (``SynthConfig.appearance``, the ``--appearance.*`` flags) a switch left at None
    takes the preset's value; a resolved appearance (:func:`resolve_appearance`, the presets) sets
    every switch. The default preset's values are given in brackets.
    """

    lighting: Optional[LightingModel] = None
    """head-lamp (point light by the lens), directional (hard sun), flat (ambient only), coloured (tinted key, fill) [head-lamp]."""
    specular: Optional[bool] = None
    """Blinn-Phong highlights on skin from every light, with a per-subject gloss (oily to dry) [False]."""
    skin_detail: Optional[bool] = None
    """Veins on the back of the hand, freckles, stronger creases and pale nail tips [False]."""
    arms: Optional[ArmsChoice] = None
    """Arms: sampled per subject (long sleeves pushed up, or short sleeves), or bare to the shoulder [sampled]."""
    objects: Optional[int] = None
    """Objects (box, can, ball) held in or passing in front of a hand, masked as occluders (label 3) [0]."""
    shutter: Optional[float] = None
    """Motion blur: shutter time as a fraction of the frame interval (0 = sharp; > 0 renders blur-samples per frame) [0]."""
    blur_samples: Optional[int] = None
    """Sub-frame renders averaged per frame under motion blur (odd: the middle one gives the masks) [5]."""
    noise: Optional[float] = None
    """Sensor noise: standard deviation of the Gaussian noise added to [0, 1] colours [0.012]."""
    jpeg_quality: Optional[int] = None
    """JPEG artefacts: encode and decode every frame at this quality (1-95; 0 = off) [0]."""
    exposure: Optional[float] = None
    """Auto-exposure drift: standard deviation of a smooth random log-gain per frame (0 = off) [0]."""


_DEFAULT = AppearanceConfig(
    lighting="head-lamp", specular=False, skin_detail=False, arms="sampled", objects=0,
    shutter=0.0, blur_samples=5, noise=0.012, jpeg_quality=0, exposure=0.0,
)
PRESETS: dict[Preset, AppearanceConfig] = {
    "default": _DEFAULT,
    "studio": replace(_DEFAULT, lighting="flat", skin_detail=True, noise=0.004),
    "harsh": replace(_DEFAULT, lighting="directional", specular=True, arms="bare", exposure=0.25, noise=0.02),
    "coloured": replace(_DEFAULT, lighting="coloured", specular=True),
    "phone": replace(_DEFAULT, shutter=0.5, noise=0.025, jpeg_quality=35, exposure=0.2),
    "occluded": replace(_DEFAULT, objects=2),
    "all": replace(
        _DEFAULT,
        lighting="coloured",
        specular=True,
        skin_detail=True,
        arms="bare",
        objects=2,
        shutter=0.5,
        noise=0.02,
        jpeg_quality=50,
        exposure=0.2,
    ),
}
"""The appearance of each preset (every switch set)."""
assert set(PRESETS) == set(get_args(Preset))


def resolve_appearance(preset: Preset, appearance: AppearanceConfig) -> AppearanceConfig:
    """The preset's switches, overridden by every switch ``appearance`` sets (not None)."""
    given = {f.name: getattr(appearance, f.name) for f in fields(AppearanceConfig) if getattr(appearance, f.name) is not None}
    return replace(PRESETS[preset], **given)
