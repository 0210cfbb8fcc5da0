"""What the camera does to a rendered frame: motion blur, exposure, sensor noise, quantisation, JPEG.

Applied in a camera's order: light gathered while the shutter is open (the mean of renders at
sub-frame times), scaled by the exposure gain, sensor noise, 8-bit quantisation, then lossy
compression. Masks never pass through here: they come from the geometry at the frame's own
time, so they stay exact under every effect.

Motion blur is approximated honestly but cheaply: sub-frame meshes, cameras and lamps are
interpolated linearly between neighbouring frames instead of re-running the motion at
sub-frame times (exact for motion that is straight within one frame interval, a chord of a
curved one otherwise), and a handful of samples stand in for the continuous exposure (a
streak of ``samples`` overlaid copies where motion is fast).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from PIL import Image
from torch import Tensor

from hand4dgs_ns.synthetic.random_signals import smooth_noise

SENSOR_STREAM = 7919
"""Salt of the per-frame sensor-noise seeds."""
EXPOSURE_CAMERAS = 3
"""Exposure signals drawn per clip (head camera and up to two static cameras), whatever the views."""


def shutter_offsets(shutter: float, samples: int) -> tuple[float, ...]:
    """Sub-frame times (frames, relative to the frame) averaged under motion blur, centred on
    the frame and spanning ``shutter`` frame intervals; the frame's own time comes first."""
    if shutter <= 0.0:
        return (0.0,)
    steps = np.arange(samples) - (samples - 1) // 2
    order = np.argsort(np.abs(steps), kind="stable")
    return tuple(float(k) / (samples - 1) * shutter for k in steps[order])


def at_time(values: Float[Tensor, "F ..."], frames: Int[Tensor, " B"], offset: float) -> Float[Tensor, "B ..."]:
    """``values`` at the times ``frames + offset`` (|offset| <= 1), linear between neighbouring
    frames and held still beyond the clip's ends."""
    if offset == 0.0:
        return values[frames]
    neighbour = (frames + (1 if offset > 0 else -1)).clamp(0, values.shape[0] - 1)
    weight = abs(offset)
    return values[frames] * (1.0 - weight) + values[neighbour] * weight


def pose_at(c2w: Float[Tensor, "F 4 4"], frames: Int[Tensor, " B"], offset: float) -> Float[Tensor, "B 4 4"]:
    """Camera poses at ``frames + offset``: positions interpolated linearly, rotations by the
    nearest rotation to the blended matrices (close to a slerp for the small turn of one frame)."""
    blended = at_time(c2w, frames, offset)
    if offset == 0.0:
        return blended
    u, _, vh = torch.linalg.svd(blended[:, :3, :3])
    pose = blended.clone()
    pose[:, :3, :3] = u @ vh
    return pose


def exposure_gains(rng: np.random.Generator, num_frames: int, std: float, fps: float) -> Float[np.ndarray, "F C"]:
    """Smooth random gains per frame and camera (auto-exposure hunting over about half a second);
    the log-gain has standard deviation ``std``. Gains multiply sRGB values, not linear light:
    close enough for drift of tens of percent."""
    return np.exp(smooth_noise(rng, num_frames, std, sigma_frames=0.5 * fps, dims=EXPOSURE_CAMERAS))


def sensor_noise(
    shape: tuple[int, ...], seed: int, camera: int, frames: Int[Tensor, " B"]
) -> Float[np.ndarray, "B ..."]:
    """Unit Gaussian noise per frame, seeded by clip, camera and frame (so any thread may render any frame)."""
    return np.stack(
        [
            np.random.default_rng([seed, SENSOR_STREAM, camera, int(f)]).standard_normal(shape, dtype=np.float32)
            for f in frames
        ]
    )


def jpeg_roundtrip(images: UInt8[np.ndarray, "B H W 3"], quality: int) -> UInt8[np.ndarray, "B H W 3"]:
    """Each image encoded as a JPEG at ``quality`` and decoded again (block and ringing artefacts)."""
    decoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(decoded)


def develop(
    rgb: Float[Tensor, "B H W 3"],
    noise: Float[np.ndarray, "B H W 3"],
    noise_std: float,
    gains: Float[np.ndarray, " B"] | None = None,
    jpeg_quality: int = 0,
) -> UInt8[np.ndarray, "B H W 3"]:
    """The 8-bit frames a camera writes: exposure gain, sensor noise, quantisation, JPEG (0 = none)."""
    image = rgb.numpy()
    if gains is not None:
        image = image * gains.astype(np.float32)[:, None, None, None]
    noisy = image + noise * noise_std
    frames = (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return jpeg_roundtrip(frames, jpeg_quality) if jpeg_quality > 0 else frames
