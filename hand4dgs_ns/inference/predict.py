"""Every frame of a video through the network, in batches, and the hands rendered in its ego view."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.geometry.cameras import invert_rigid, transform_points
from hand4dgs_ns.geometry.rotations import matrix_to_axis_angle
from hand4dgs_ns.network.hand_network import HandNetwork, HandsPrediction
from hand4dgs_ns.network.video_shape import with_shape
from hand4dgs_ns.render import rasterize


@dataclass(frozen=True)
class VideoHands:
    """Both hands of every frame of one video (slot 0 left, 1 right), as numpy arrays on the host."""

    joints_world: Float[np.ndarray, "F 2 21 3"]
    """Joints in OpenPose order, world frame (metres)."""
    joints_camera: Float[np.ndarray, "F 2 21 3"]
    """The same joints in each frame's ego camera frame (OpenCV axes)."""
    vertices_world: Float[np.ndarray, "F 2 V 3"]
    """Mesh vertices, world frame."""
    betas: Float[np.ndarray, "F 2 K"]
    """Template shape coefficients."""
    global_orient: Float[np.ndarray, "F 2 3"]
    """Wrist rotation (axis-angle), ego camera frame."""
    hand_pose: Float[np.ndarray, "F 2 J 3"]
    """Non-root joint rotations (axis-angle) relative to their parents."""
    translation: Float[np.ndarray, "F 2 3"]
    """Template translation, ego camera frame (metres)."""
    valid: Bool[np.ndarray, "F 2"]
    """Hand present (from the clip's boxes)."""

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def synchronized_time(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has finished its queued work (timings of GPU work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def predict_batch(
    network: HandNetwork, inputs: FrameInputs, sequence: int, frames: Tensor, stager: PinnedStager, with_gaussians: bool,
    shape: Optional[Float[Tensor, "2 K"]] = None,
) -> tuple[HandsPrediction, Tensor]:
    """The network's prediction for some frames of one sequence, and their ego c2w on the device;
    with ``shape`` (the video's, :func:`~hand4dgs_ns.network.video_shape.video_shape`), each hand
    has that shape in every frame."""
    x = inputs.network_inputs(
        torch.full_like(frames, sequence), frames, network.config.window // 2, stager,
        with_estimates=network.config.estimate_input, with_color_crops=with_gaussians,
    )
    if shape is not None:
        x = with_shape(x, shape)
    return network(x, with_gaussians), x.c2w


@torch.no_grad()
def render_hands(prediction: HandsPrediction, c2w: Tensor, K: Tensor, width: int, height: int, background: float = 0.0) -> tuple[Tensor, Tensor]:
    """RGB (B, H, W, 3) and alpha (B, H, W, 1) of each row of ``prediction`` seen from its camera
    (``c2w``, OpenCV axes; ``K``): a frame's egocentric camera, or any other."""
    b = c2w.shape[0]
    backgrounds = torch.full((b, 3), background, device=c2w.device)
    out = rasterize(
        prediction.means, prediction.quats, prediction.scales, prediction.opacities, prediction.colors,
        invert_rigid(c2w), K, width, height, backgrounds, shared_intrinsics=bool(torch.equal(K, K[:1].expand_as(K))), with_depth=False,
    )
    return out.rgb.clamp(0, 1), out.alpha


def video_hands(parts: list[HandsPrediction], c2w: list[Tensor]) -> VideoHands:
    """Concatenates batch predictions of one video into host arrays."""

    def cat(name: str) -> Tensor:
        return torch.cat([getattr(p, name) for p in parts]).float().cpu()

    joints, c2w_all = cat("joints"), torch.cat(c2w).float().cpu()
    return VideoHands(
        joints_world=joints.numpy(),
        joints_camera=transform_points(invert_rigid(c2w_all)[:, None], joints).numpy(),
        vertices_world=cat("vertices").numpy(),
        betas=cat("betas").numpy(),
        global_orient=matrix_to_axis_angle(cat("global_orient")).numpy(),
        hand_pose=matrix_to_axis_angle(cat("hand_pose")).numpy(),
        translation=cat("translation").numpy(),
        valid=torch.cat([p.valid for p in parts]).cpu().numpy(),
    )
