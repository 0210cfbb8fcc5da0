"""Appearance variants of the synthetic clips: one switch per effect a real camera shows, and named presets.

A benchmark is run per variant by regenerating the same seeds under another preset: the
subject, room, motion, head path and labels stay the same (their random draws come from
their own streams), only the pixels change. The default switches reproduce the original
generator exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

LightingModel = Literal["head-lamp", "directional", "flat", "coloured"]
ArmsChoice = Literal["sampled", "bare"]
Preset = Literal["default", "studio", "harsh", "coloured", "phone", "occluded", "all"]


@dataclass(frozen=True)
class AppearanceConfig:
    """Switches for lighting, skin, arms, camera effects and occluding objects."""

    lighting: LightingModel = "head-lamp"
    """head-lamp (point light by the lens), directional (hard sun), flat (ambient only), coloured (tinted key, fill)."""
    specular: bool = False
    """Blinn-Phong highlights on skin from every light, with a per-subject gloss (oily to dry)."""
    skin_detail: bool = False
    """Veins on the back of the hand, freckles, stronger creases and pale nail tips."""
    arms: ArmsChoice = "sampled"
    """Arms: sampled per subject (long sleeves pushed up, or short sleeves), or bare to the shoulder."""
    objects: int = 0
    """Objects (box, can, ball) held in or passing in front of a hand, masked as occluders (label 3)."""
    shutter: float = 0.0
    """Motion blur: shutter time as a fraction of the frame interval (0 = sharp; > 0 renders blur-samples per frame)."""
    blur_samples: int = 5
    """Sub-frame renders averaged per frame under motion blur (odd: the middle one gives the masks)."""
    noise: float = 0.012
    """Sensor noise: standard deviation of the Gaussian noise added to [0, 1] colours."""
    jpeg_quality: int = 0
    """JPEG artefacts: encode and decode every frame at this quality (1-95; 0 = off)."""
    exposure: float = 0.0
    """Auto-exposure drift: standard deviation of a smooth random log-gain per frame (0 = off)."""


PRESETS: dict[Preset, AppearanceConfig] = {
    "default": AppearanceConfig(),
    "studio": AppearanceConfig(lighting="flat", skin_detail=True, noise=0.004),
    "harsh": AppearanceConfig(lighting="directional", specular=True, arms="bare", exposure=0.25, noise=0.02),
    "coloured": AppearanceConfig(lighting="coloured", specular=True),
    "phone": AppearanceConfig(shutter=0.5, noise=0.025, jpeg_quality=35, exposure=0.2),
    "occluded": AppearanceConfig(objects=2),
    "all": AppearanceConfig(
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
"""The appearance of each preset."""
assert set(PRESETS) == set(get_args(Preset))


def resolve_appearance(preset: Preset, appearance: AppearanceConfig) -> AppearanceConfig:
    """The preset's switches, overridden by every switch of ``appearance`` that is not at its default."""
    default = AppearanceConfig()
    changed = {
        f.name: getattr(appearance, f.name)
        for f in fields(AppearanceConfig)
        if getattr(appearance, f.name) != getattr(default, f.name)
    }
    return replace(PRESETS[preset], **changed)

