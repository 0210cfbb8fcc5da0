"""Synthesises one egocentric two-hand clip and writes it as a sequence folder (format v1).

Pipeline: a random subject (hand shape, skin, sleeves), room, lighting and head-camera path;
scripted two-hand motion skinned with the open hand templates; a shaded mesh render of each
frame from the head camera and from two static third-person cameras; masks, boxes and
visibility flags from the render; pseudo-labels from the ground truth through an estimator
error model. Every random draw comes from a named child stream of ``seed`` (sensor noise from
a seed per camera and frame), so the same settings give identical files, whichever thread
renders what, and changing one part of the generator leaves the others' draws alone.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro
from jaxtyping import Float
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor
from typing_extensions import Annotated

from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER, SequenceCameras, SequenceHands, SequenceWriter
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.open_hand import load_open_hand
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.synthetic.appearance import hand_albedo, sample_skin
from hand4dgs_ns.synthetic.arm import arm_albedo, arm_faces, arm_rest_points, arm_vertices, sample_arm_look
from hand4dgs_ns.synthetic.camera_path import head_camera_path, pinhole_intrinsics, static_view_cameras
from hand4dgs_ns.synthetic.hand_rig import build_rig
from hand4dgs_ns.synthetic.labels import hand_boxes, hand_valid
from hand4dgs_ns.synthetic.motion import SIDES, ClipMotion, HandTrack, hand_motion
from hand4dgs_ns.synthetic.pseudo_labels import HandParams, pseudo_labels
from hand4dgs_ns.synthetic.room import Room, render_room, sample_room
from hand4dgs_ns.synthetic.scene_render import Lighting, SceneMesh, render_scene, sample_lighting

# Child random streams, by purpose (append new ones at the end to keep old clips unchanged).
_STREAMS = ("subject", "head", "room", "motion", "views", "lighting", "pseudo")
_SENSOR_STREAM = 7919  # salt for the per-frame sensor-noise seeds
_BATCH = 6
_STATIC_HFOV_DEG = 42.0
_SENSOR_NOISE = 0.012
_HEAD_LAMP_OFFSET = np.array([0.0, -0.06, 0.02])  # head camera frame: just above the lens


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic clip; ``hand4dgs synth`` and ``hand4dgs synth-set`` take them as flags."""

    num_frames: Annotated[int, tyro.conf.arg(name="frames")] = 300
    """Number of frames."""
    seed: int = 0
    """Random seed: subject, room, lighting, camera path and motion; the same seed gives identical files."""
    width: int = 320
    """Image width in pixels."""
    height: int = 240
    """Image height in pixels."""
    fps: float = 30.0
    """Frame rate."""
    hfov_deg: float = 90.0
    """Horizontal field of view of the head camera in degrees (wide, like H2O's egocentric camera)."""
    pseudo_error_mm: float = 25.0
    """MPJPE of the pseudo-labels against the ground truth over usable hands, in mm (0 = exact labels)."""
    static_views: bool = True
    """Also render two static third-person cameras under views/ for novel-view evaluation."""
    supersample: int = 2
    """Antialiasing: rasterise at this many times the resolution per axis (1 = off, faster)."""
    betas_std: tyro.conf.Suppress[float] = 0.8
    """Standard deviation of the subject's shape coefficients (not a command-line flag)."""


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize_clip` wrote."""

    path: Path
    """The sequence folder."""
    seconds: float
    """Wall-clock time."""
    pseudo_mpjpe_mm: float
    """Measured MPJPE of the pseudo-labels over usable hands."""
    valid_fraction: tuple[float, float]
    """Fraction of frames in which the left / right hand is usable."""
    crossings: list[tuple[int, int]] = field(default_factory=list)
    """Frame ranges where the hands cross."""
    exits: list[tuple[str, int, int]] = field(default_factory=list)
    """(side, first, last) frame ranges where a hand is sent out of view."""


def check_config(config: SynthConfig) -> None:
    """Raises a user error naming the flag if a setting is out of range."""
    if config.seed < 0:
        raise Hand4DGSError(f"--seed {config.seed} is negative; use a seed >= 0.")
    if config.num_frames < 2:
        raise Hand4DGSError(f"--frames {config.num_frames} is too few; ask for at least 2 frames.")
    if config.width < 16 or config.height < 16:
        raise Hand4DGSError(f"a {config.width}x{config.height} image is too small; use at least 16x16 pixels.")
    if not 20.0 <= config.hfov_deg <= 150.0:
        raise Hand4DGSError(f"--hfov-deg {config.hfov_deg} is outside 20-150 degrees; pick a pinhole field of view.")
    if config.pseudo_error_mm < 0 or config.fps <= 0 or config.supersample < 1:
        raise Hand4DGSError("--pseudo-error-mm must be >= 0, --fps > 0 and --supersample >= 1; fix the setting.")


def _params(track: HandTrack, template: HandTemplate, betas: torch.Tensor) -> HandParams:
    """Hand-model parameters that put the wrist joint exactly on the track's wrist."""
    num = track.global_orient.shape[0]
    betas = betas.expand(num, -1)
    zero = torch.zeros(num, 3)
    posed = hand_forward(template, track.global_orient, track.hand_pose, betas, zero)
    transl = torch.from_numpy(track.wrist).float() - posed.joints[:, 0]
    return HandParams(global_orient=track.global_orient, hand_pose=track.hand_pose, betas=betas, transl=transl)


def _scene_mesh(templates, rigs, skin, arm_look) -> SceneMesh:
    left, right = templates
    v_left, v_right = left.num_vertices, right.num_vertices
    hand_albedo_lr = [hand_albedo(t, r, skin) for t, r in zip(templates, rigs)]
    arm_topology = [arm_faces(r.wrist_loop.numel()) for r in rigs]
    arm_sizes = [int(f.max()) + 1 for f in arm_topology]
    faces = torch.cat(
        [
            left.faces,
            right.faces + v_left,
            arm_topology[0] + v_left + v_right,
            arm_topology[1] + v_left + v_right + arm_sizes[0],
        ]
    )
    labels = torch.cat(
        [
            torch.full((left.faces.shape[0],), 1),
            torch.full((right.faces.shape[0],), 2),
            # Forearms and sleeves are occluders: they hide the wrist and, seen from the head, parts of the hand.
            torch.full((arm_topology[0].shape[0] + arm_topology[1].shape[0],), MASK_OCCLUDER),
        ]
    )
    arms_albedo = [arm_albedo(arm_look, skin.base, a[r.wrist_loop]) for a, r in zip(hand_albedo_lr, rigs)]
    arm_rest = [
        arm_rest_points(arm_look, t.v_template[r.wrist_loop], r.wrist_loop_angles) + offset
        for t, r, offset in zip(templates, rigs, (0.0, 1.0))
    ]
    albedo = torch.cat([*hand_albedo_lr, *arms_albedo])
    rest = torch.cat([left.v_template.float(), right.v_template.float() + 1.0, *arm_rest])
    return SceneMesh(faces=faces, face_labels=labels, albedo=albedo, rest_points=rest, detail=skin.detail)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]synth[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TextColumn("{task.fields[fps]} fps"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


@dataclass(frozen=True)
class ClipScene:
    """Everything about a clip except its pixels: cameras, meshes, ground truth, looks."""

    config: SynthConfig
    """The settings it was built from."""
    templates: tuple[HandTemplate, HandTemplate]
    """Left and right open hand templates."""
    params: tuple[HandParams, HandParams]
    """Ground-truth hand-model parameters of the left and right hand."""
    gt_vertices: Float[Tensor, "F 2 V 3"]
    """Ground-truth hand meshes, world frame."""
    gt_joints: Float[Tensor, "F 2 21 3"]
    """Ground-truth OpenPose joints, world frame."""
    mesh: SceneMesh
    """Topology, labels and surface attributes of everything rasterised."""
    mesh_vertices: Float[Tensor, "F N 3"]
    """Per-frame vertices of ``mesh`` (hands then arms), world frame."""
    lighting: Lighting
    """Light strengths and tint."""
    room: Room
    """The background room."""
    c2w: Float[Tensor, "F 4 4"]
    """Head camera, OpenCV axes."""
    K: Float[Tensor, "3 3"]
    """Head camera intrinsics."""
    lamp: Float[Tensor, "F 3"]
    """World position of the head lamp per frame."""
    views: dict[str, tuple[Tensor, Tensor]]
    """Static cameras by name: (c2w (4, 4), K (3, 3))."""
    motion: ClipMotion
    """The scripted motion and its events."""


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}


def build_scene(config: SynthConfig) -> ClipScene:
    """Draws the subject, room, camera path and motion of a clip and skins the hands."""
    check_config(config)
    rngs = _streams(config.seed)
    F, W, H = config.num_frames, config.width, config.height
    templates = tuple(load_open_hand(side).to(device=torch.device("cpu"), dtype=torch.float32) for side in SIDES)
    rigs = tuple(build_rig(t) for t in templates)

    subject = rngs["subject"]
    num_betas = max(t.num_betas for t in templates)
    betas = torch.from_numpy(subject.normal(0.0, config.betas_std, num_betas)).float()
    skin = sample_skin(subject)
    arm_look = sample_arm_look(subject)

    head = head_camera_path(rngs["head"], F, config.fps)
    room = sample_room(rngs["room"], head.eye_height)
    motion = hand_motion(dict(zip(SIDES, rigs)), head, rngs["motion"], F, config.fps)
    tracks = (motion.left, motion.right)
    params = tuple(_params(tr, t, betas[: t.num_betas][None]) for tr, t in zip(tracks, templates))
    outs = [hand_forward(t, p.global_orient, p.hand_pose, p.betas, p.transl) for t, p in zip(templates, params)]
    arms = [
        arm_vertices(
            out.vertices[:, rig.wrist_loop],
            rig.wrist_loop_angles,
            torch.from_numpy(tr.wrist).float(),
            torch.from_numpy(tr.forearm_dir).float(),
            tr.global_orient @ rig.frame[:, 2],
            torch.from_numpy(tr.shoulder).float(),
            rig.wrist_radii,
            arm_look,
        )
        for out, tr, rig in zip(outs, tracks, rigs)
    ]
    c2w = torch.from_numpy(head.c2w).float()
    lamp = (c2w[:, :3, :3] @ torch.from_numpy(_HEAD_LAMP_OFFSET).float()) + c2w[:, :3, 3]

    views = {}
    if config.static_views:
        target = np.concatenate([motion.left.wrist, motion.right.wrist]).mean(0) - np.array([0.0, 0.0, 0.03])
        K_view = torch.from_numpy(pinhole_intrinsics(W, H, _STATIC_HFOV_DEG)).float()
        for name, pose in static_view_cameras(target, float(head.body_yaw.mean()), rngs["views"]).items():
            views[name] = (torch.from_numpy(pose).float(), K_view)

    return ClipScene(
        config=config,
        templates=templates,
        params=params,
        gt_vertices=torch.stack([o.vertices for o in outs], dim=1),
        gt_joints=torch.stack([o.joints for o in outs], dim=1),
        mesh=_scene_mesh(templates, rigs, skin, arm_look),
        mesh_vertices=torch.cat([outs[0].vertices, outs[1].vertices, arms[0], arms[1]], dim=1),
        lighting=sample_lighting(rngs["lighting"]),
        room=room,
        c2w=c2w,
        K=torch.from_numpy(pinhole_intrinsics(W, H, config.hfov_deg)).float(),
        lamp=lamp,
        views=views,
        motion=motion,
    )


def synthesize_clip(
    out: Path, config: SynthConfig = SynthConfig(), overwrite: bool = False, progress: bool = True
) -> SynthResult:
    """Writes a synthetic clip to ``out`` (a new sequence folder; nothing is left on error)."""
    check_config(config)
    start = time.perf_counter()
    # One intra-op torch thread: rendering runs in two threads of its own (see _render_and_write),
    # and torch's intra-op threads measured up to 10x slower than one on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            scene = build_scene(config)
            path, mpjpe, valid = _render_and_write(scene, Path(out), overwrite, progress)
    finally:
        torch.set_num_threads(threads)
    return SynthResult(
        path=path,
        seconds=time.perf_counter() - start,
        pseudo_mpjpe_mm=mpjpe,
        valid_fraction=(float(valid[:, 0].float().mean()), float(valid[:, 1].float().mean())),
        crossings=scene.motion.crossings,
        exits=scene.motion.exits,
    )


def _render_and_write(scene: ClipScene, out: Path, overwrite: bool, progress: bool) -> tuple[Path, float, Tensor]:
    config = scene.config
    rngs = _streams(config.seed)
    F, W, H, ss = config.num_frames, config.width, config.height, config.supersample
    K = scene.K.expand(F, 3, 3)
    # The static cameras see a still room: ray-cast it once, lit by the lamp's mean position.
    view_backgrounds = {
        name: render_room(scene.room, pose[None], K_view[None], W, H, scene.lamp.mean(0, keepdim=True))
        for name, (pose, K_view) in scene.views.items()
    }
    view_names = list(scene.views)

    def render_ego(idx: Tensor) -> tuple[np.ndarray, np.ndarray]:
        lamp, c2w = scene.lamp[idx], scene.c2w[idx]
        bg, bg_depth = render_room(scene.room, c2w, K[idx], W, H, lamp)
        rgb, labels = render_scene(
            scene.mesh, scene.lighting, scene.mesh_vertices[idx], c2w, K[idx], lamp, bg, bg_depth, ss
        )
        return _to_uint8(rgb, config.seed, 0, idx), labels.numpy()

    def render_view(name: str, idx: Tensor) -> tuple[np.ndarray, np.ndarray]:
        n = idx.numel()
        pose, K_view = scene.views[name]
        bg, bg_depth = view_backgrounds[name]
        c2w, Ks = pose.expand(n, 4, 4), K_view.expand(n, 3, 3)
        bg, bg_depth = bg.expand(n, -1, -1, -1), bg_depth.expand(n, -1, -1)
        rgb, labels = render_scene(
            scene.mesh, scene.lighting, scene.mesh_vertices[idx], c2w, Ks, scene.lamp[idx], bg, bg_depth, ss
        )
        return _to_uint8(rgb, config.seed, 1 + view_names.index(name), idx), labels.numpy()

    visible = torch.zeros(F, 2)
    batches = [torch.arange(first, min(first + _BATCH, F)) for first in range(0, F, _BATCH)]
    bar = _progress() if progress else None
    task = bar.add_task("synth", total=F, fps="-") if bar else None
    # Torch ops release the GIL and each runs single-threaded, so two render threads (one job
    # per camera and batch) and a PNG-encoding thread keep both cores of a laptop busy.
    with (
        SequenceWriter(out, overwrite=overwrite) as writer,
        ThreadPoolExecutor(max_workers=2) as render_pool,
        ThreadPoolExecutor(max_workers=1) as write_pool,
    ):
        rendering: deque[tuple[Tensor, Future, dict[str, Future]]] = deque()
        writing: deque[Future] = deque()
        if bar:
            bar.start()
        try:
            t0 = time.perf_counter()
            for k, idx in enumerate(batches):
                jobs = {name: render_pool.submit(render_view, name, idx) for name in view_names}
                rendering.append((idx, render_pool.submit(render_ego, idx), jobs))
                while rendering and (len(rendering) > 2 or k == len(batches) - 1):
                    done_idx, ego_job, view_jobs = rendering.popleft()
                    frames, labels = ego_job.result()
                    visible[done_idx, 0] = torch.from_numpy((labels == 1).sum(axis=(1, 2))).float()
                    visible[done_idx, 1] = torch.from_numpy((labels == 2).sum(axis=(1, 2))).float()
                    views = {name: job.result() for name, job in view_jobs.items()}
                    writing.append(write_pool.submit(_write_batch, writer, frames, labels, views))
                    while len(writing) > 2:
                        writing.popleft().result()
                    if bar:
                        done = int(done_idx[-1]) + 1
                        bar.update(task, completed=done, fps=f"{done / (time.perf_counter() - t0):.1f}")
            for future in writing:
                future.result()
        finally:
            if bar:
                bar.stop()

        boxes = hand_boxes(scene.gt_vertices, scene.c2w, K, W, H)
        valid = hand_valid(visible, boxes, W, H)
        pseudo_joints, pseudo_verts, mpjpe = pseudo_labels(
            scene.templates, scene.params, scene.gt_joints, scene.c2w, valid, config.pseudo_error_mm, rngs["pseudo"]
        )
        hands = SequenceHands(
            bbox=boxes.numpy(),
            valid=valid.numpy(),
            pseudo_joints=pseudo_joints.numpy(),
            pseudo_verts=pseudo_verts.numpy(),
            gt_joints=scene.gt_joints.numpy(),
            gt_valid=np.ones((F, 2), dtype=bool),
        )
        ego_cameras = SequenceCameras(K=K.numpy(), c2w=scene.c2w.numpy(), fps=config.fps, width=W, height=H)
        views_cameras = {
            name: SequenceCameras(
                K=K_view.expand(F, 3, 3).numpy(),
                c2w=pose.expand(F, 4, 4).numpy(),
                fps=config.fps,
                width=W,
                height=H,
            )
            for name, (pose, K_view) in scene.views.items()
        }
        path = writer.finish(ego_cameras, hands, views_cameras)
    return path, mpjpe, valid


def _to_uint8(rgb: Tensor, seed: int, camera: int, frames: Tensor) -> np.ndarray:
    """Adds sensor noise (seeded per clip, camera and frame, so any thread may render any
    frame) and quantises to uint8."""
    noise = np.stack(
        [
            np.random.default_rng([seed, _SENSOR_STREAM, camera, int(f)]).standard_normal(
                rgb.shape[1:], dtype=np.float32
            )
            for f in frames
        ]
    )
    noisy = rgb.numpy() + noise * _SENSOR_NOISE
    return (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_batch(
    writer: SequenceWriter, frames: np.ndarray, masks: np.ndarray, views: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    for i in range(frames.shape[0]):
        writer.add_frame(frames[i], masks[i])
        for name, (images, labels) in views.items():
            writer.add_view_frame(name, images[i], labels[i])
