"""Pseudo-labels: ground truth plus the error of an off-the-shelf per-frame hand estimator.

Monocular estimators such as HaMeR on egocentric video are off by roughly 20-30 mm MPJPE,
mostly in depth (scale/depth ambiguity), with errors that are partly per-frame jitter and
partly a bias that drifts slowly (the same hand looks alike in neighbouring frames). The
error is put on the hand model's parameters, in the camera frame: a global rotation, a
rotation per joint, a shape offset, and a translation whose depth component is 2.5 times
the others; each is white jitter plus an AR(1) drift. Re-running the hand model on the
perturbed parameters keeps the noisy vertices and joints consistent. The overall scale is
then solved (a few secant steps) so the clip's MPJPE over usable hands equals the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.synthetic.random_signals import ar1_noise

# Unit error (scaled as a whole to reach the target MPJPE): radians, betas, metres (x, y, depth).
_ROT_JITTER, _ROT_DRIFT = np.deg2rad(2.0), np.deg2rad(4.0)
_POSE_JITTER, _POSE_DRIFT = np.deg2rad(3.0), np.deg2rad(5.0)
_BETAS_OFFSET, _BETAS_JITTER = 0.4, 0.1
_TRANS_JITTER = np.array([0.004, 0.004, 0.010])
_TRANS_DRIFT = np.array([0.008, 0.008, 0.020])
_DRIFT_RHO = 0.96


@dataclass(frozen=True)
class HandParams:
    """One hand's hand-model parameters over a clip (world frame)."""

    global_orient: Float[Tensor, "F 3 3"]
    """Global rotation of the rest pose."""
    hand_pose: Float[Tensor, "F Jm1 3 3"]
    """Local joint rotations."""
    betas: Float[Tensor, "F S"]
    """Shape coefficients."""
    transl: Float[Tensor, "F 3"]
    """Translation added to the posed mesh."""


@dataclass(frozen=True)
class _UnitError:
    rot: Tensor  # (F, 3) axis-angle, camera frame
    pose: Tensor  # (F, J-1, 3) axis-angle
    betas: Tensor  # (F, S)
    trans: Tensor  # (F, 3) camera frame


def _unit_error(rng: np.random.Generator, num_frames: int, num_pose: int, num_betas: int) -> _UnitError:
    def jitter_drift(jitter: float | np.ndarray, drift: float | np.ndarray, dims: int) -> np.ndarray:
        white = rng.standard_normal((num_frames, dims)) * jitter
        return white + ar1_noise(rng, num_frames, drift, _DRIFT_RHO, dims)

    rot = jitter_drift(_ROT_JITTER, _ROT_DRIFT, 3)
    pose = jitter_drift(_POSE_JITTER, _POSE_DRIFT, num_pose * 3).reshape(num_frames, num_pose, 3)
    betas = (
        rng.standard_normal(num_betas) * _BETAS_OFFSET + rng.standard_normal((num_frames, num_betas)) * _BETAS_JITTER
    )
    trans = jitter_drift(_TRANS_JITTER, _TRANS_DRIFT, 3)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
    return _UnitError(rot=as_tensor(rot), pose=as_tensor(pose), betas=as_tensor(betas), trans=as_tensor(trans))


def _perturbed(params: HandParams, error: _UnitError, scale: float, cam_rot: Tensor) -> HandParams:
    rot_world = cam_rot @ axis_angle_to_matrix(scale * error.rot) @ cam_rot.transpose(-1, -2)
    return HandParams(
        global_orient=rot_world @ params.global_orient,
        hand_pose=axis_angle_to_matrix(scale * error.pose) @ params.hand_pose,
        betas=params.betas + scale * error.betas,
        transl=params.transl + (cam_rot @ (scale * error.trans)[..., None]).squeeze(-1),
    )


def _forward(template: HandTemplate, params: HandParams) -> tuple[Tensor, Tensor]:
    out = hand_forward(template, params.global_orient, params.hand_pose, params.betas, params.transl)
    return out.vertices, out.joints


def pseudo_labels(
    templates: tuple[HandTemplate, HandTemplate],
    params: tuple[HandParams, HandParams],
    gt_joints: Float[Tensor, "F 2 21 3"],
    c2w: Float[Tensor, "F 4 4"],
    usable: Bool[Tensor, "F 2"],
    target_mpjpe_mm: float,
    rng: np.random.Generator,
) -> tuple[Float[Tensor, "F 2 21 3"], Float[Tensor, "F 2 V 3"], float]:
    """Noisy joints and vertices of both hands (world frame) and their MPJPE to ``gt_joints`` in mm.

    The MPJPE is taken over ``usable`` hands (all hands when none is usable) and matches
    ``target_mpjpe_mm`` to within a fraction of a millimetre; 0 gives the ground truth.
    """
    num_frames = c2w.shape[0]
    cam_rot = c2w[:, :3, :3].float()
    errors = [_unit_error(rng, num_frames, p.hand_pose.shape[1], p.betas.shape[1]) for p in params]
    weight = usable if bool(usable.any()) else torch.ones_like(usable)

    def evaluate(scale: float) -> tuple[Tensor, Tensor, float]:
        outs = [_forward(t, _perturbed(p, e, scale, cam_rot)) for t, p, e in zip(templates, params, errors)]
        joints = torch.stack([o[1] for o in outs], dim=1)
        verts = torch.stack([o[0] for o in outs], dim=1)
        per_hand = (joints - gt_joints).norm(dim=-1).mean(dim=-1)  # (F, 2)
        mpjpe = float((per_hand * weight).sum() / weight.sum()) * 1000.0
        return joints, verts, mpjpe

    if target_mpjpe_mm <= 0:
        return evaluate(0.0)
    scale_a, (joints, verts, error_a) = 1.0, evaluate(1.0)
    scale_b = target_mpjpe_mm / max(error_a, 1e-6)
    joints, verts, error_b = evaluate(scale_b)
    for _ in range(4):
        if abs(error_b - target_mpjpe_mm) < 0.05 or error_b == error_a:
            break
        slope = (error_b - error_a) / (scale_b - scale_a)
        scale_a, error_a = scale_b, error_b
        scale_b = max(scale_b + (target_mpjpe_mm - error_b) / slope, 1e-3)
        joints, verts, error_b = evaluate(scale_b)
    return joints, verts, error_b
