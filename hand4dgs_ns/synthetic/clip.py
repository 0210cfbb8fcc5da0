"""Synthesises one egocentric two-hand clip and writes it as a sequence folder (format v1).

Pipeline: a random subject (hand shape, skin, sleeves), room, lighting and head-camera path;
scripted two-hand motion skinned with the open hand templates; a shaded mesh render of each
frame from the head camera and from two static third-person cameras; masks, boxes and
visibility flags from the render; pseudo-labels from the ground truth through an estimator
error model. Every random draw comes from a named child stream of ``seed`` (sensor noise from
a seed per camera and frame), so the same settings give identical files, whichever thread
renders what, and changing one part of the generator leaves the others' draws alone.
Appearance variants (:mod:`.variants`: lighting models, skin detail, bare arms, occluding
objects, motion blur, exposure drift, sensor noise, JPEG) change only the pixels and the
occluder label of the masks; with the default switches the output is the original one.
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
from jaxtyping import Float, UInt8
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor
from typing_extensions import Annotated

from hand4dgs_ns.data.sequence_format import HAND_SIDES, MASK_OCCLUDER, SequenceCameras, SequenceHands, SequenceWriter
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.open_hand import load_open_hand
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.synthetic.appearance import SkinLook, SkinMarks, hand_albedo, sample_skin, sample_skin_marks
from hand4dgs_ns.synthetic.arm import (
    ArmLook,
    arm_albedo,
    arm_faces,
    arm_gloss,
    arm_rest_points,
    arm_vertices,
    bare_arms,
    sample_arm_look,
)
from hand4dgs_ns.synthetic.camera_effects import (
    at_time,
    develop,
    exposure_gains,
    pose_at,
    sensor_noise,
    shutter_offsets,
)
from hand4dgs_ns.synthetic.camera_path import head_camera_path, pinhole_intrinsics, static_view_cameras
from hand4dgs_ns.synthetic.hand_rig import HandRig, build_rig
from hand4dgs_ns.synthetic.labels import hand_boxes, hand_valid
from hand4dgs_ns.synthetic.motion import ClipMotion, HandTrack, hand_motion
from hand4dgs_ns.synthetic.occluders import ObjectLayer, object_layer, sample_objects
from hand4dgs_ns.synthetic.pseudo_labels import HandParams, pseudo_labels
from hand4dgs_ns.synthetic.room import Room, render_room, sample_room
from hand4dgs_ns.synthetic.scene_render import Lighting, SceneMesh, relight, render_scene, sample_lighting, with_gloss
from hand4dgs_ns.synthetic.variants import AppearanceConfig, Preset, resolve_appearance

# Child random streams, by purpose (append new ones at the end to keep old clips unchanged).
_STREAMS = (
    *("subject", "head", "room", "motion", "views", "lighting", "pseudo"),
    *("lights", "gloss", "skin_marks", "objects", "exposure"),  # appearance variants
)
_BATCH = 6
_STATIC_HFOV_DEG = 42.0
_MAX_OBJECTS = 8
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
    preset: Preset = "default"
    """Appearance preset (see the README); each --appearance.* flag given overrides its switch (phone, all: slower)."""
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    """Appearance switches; those left at None take the preset's value (see --preset)."""
    betas_std: tyro.conf.Suppress[float] = 0.8
    """Standard deviation of the subject's shape coefficients (not a command-line flag)."""

    @property
    def look(self) -> AppearanceConfig:
        """The appearance in effect: the preset's, with the switches set in ``appearance``."""
        return resolve_appearance(self.preset, self.appearance)


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
    look = config.look
    if not 0 <= look.objects <= _MAX_OBJECTS:
        raise Hand4DGSError(f"--appearance.objects {look.objects} is outside 0-{_MAX_OBJECTS}; ask for fewer objects.")
    if not 0.0 <= look.shutter <= 1.0:
        raise Hand4DGSError(f"--appearance.shutter {look.shutter} is outside 0-1 (a fraction of the frame interval).")
    if look.blur_samples < 3 or look.blur_samples % 2 == 0:
        raise Hand4DGSError(
            f"--appearance.blur-samples {look.blur_samples}: use an odd number >= 3 (the middle one gives the masks)."
        )
    if not 0 <= look.jpeg_quality <= 95:
        raise Hand4DGSError(f"--appearance.jpeg-quality {look.jpeg_quality} is outside 1-95 (0 turns JPEG off).")
    if look.noise < 0 or look.exposure < 0:
        raise Hand4DGSError("--appearance.noise and --appearance.exposure must be >= 0; fix the setting.")


def _params(track: HandTrack, template: HandTemplate, betas: torch.Tensor) -> HandParams:
    """Hand-model parameters that put the wrist joint exactly on the track's wrist."""
    num = track.global_orient.shape[0]
    betas = betas.expand(num, -1)
    zero = torch.zeros(num, 3)
    posed = hand_forward(template, track.global_orient, track.hand_pose, betas, zero)
    transl = torch.from_numpy(track.wrist).float() - posed.joints[:, 0]
    return HandParams(global_orient=track.global_orient, hand_pose=track.hand_pose, betas=betas, transl=transl)


def _scene_mesh(
    templates: tuple[HandTemplate, HandTemplate],
    rigs: tuple[HandRig, HandRig],
    skin: SkinLook,
    arm_look: ArmLook,
    marks: SkinMarks | None,
    glossy: bool,
) -> SceneMesh:
    left, right = templates
    v_left, v_right = left.num_vertices, right.num_vertices
    hand_albedo_lr = [hand_albedo(t, r, skin, marks) for t, r in zip(templates, rigs)]
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
    # Highlights belong to skin: none on sleeves.
    gloss = (
        torch.cat([torch.ones(v_left + v_right), *(arm_gloss(arm_look, r.wrist_loop.numel()) for r in rigs)])
        if glossy
        else None
    )
    return SceneMesh(faces=faces, face_labels=labels, albedo=albedo, rest_points=rest, detail=skin.detail, gloss=gloss)


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
    look: AppearanceConfig
    """The appearance switches in effect (preset and overrides resolved)."""
    objects: ObjectLayer | None
    """Occluding objects, drawn over the hands and arms; None without objects."""
    exposure: Float[np.ndarray, "F C"] | None
    """Exposure gain per frame and camera (head camera, then static views); None when fixed."""


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}


def build_scene(config: SynthConfig) -> ClipScene:
    """Draws the subject, room, camera path and motion of a clip and skins the hands."""
    check_config(config)
    rngs = _streams(config.seed)
    F, W, H = config.num_frames, config.width, config.height
    templates = tuple(load_open_hand(side).to(device=torch.device("cpu"), dtype=torch.float32) for side in HAND_SIDES)
    rigs = tuple(build_rig(t) for t in templates)

    look = config.look
    subject = rngs["subject"]
    num_betas = max(t.num_betas for t in templates)
    betas = torch.from_numpy(subject.normal(0.0, config.betas_std, num_betas)).float()
    skin = sample_skin(subject)
    arm_look = sample_arm_look(subject)
    if look.arms == "bare":
        arm_look = bare_arms(arm_look)
    marks = sample_skin_marks(rngs["skin_marks"], skin) if look.skin_detail else None
    lighting = relight(sample_lighting(rngs["lighting"]), look.lighting, rngs["lights"])
    if look.specular:
        lighting = with_gloss(lighting, rngs["gloss"])

    head = head_camera_path(rngs["head"], F, config.fps)
    room = sample_room(rngs["room"], head.eye_height)
    motion = hand_motion(dict(zip(HAND_SIDES, rigs)), head, rngs["motion"], F, config.fps)
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
    gt_joints = torch.stack([o.joints for o in outs], dim=1)
    objects = None
    if look.objects:
        hand_frames = torch.stack([tr.global_orient @ rig.frame for tr, rig in zip(tracks, rigs)], dim=1)
        objects = object_layer(
            sample_objects(rngs["objects"], look.objects), gt_joints, hand_frames, c2w, config.fps, rngs["objects"]
        )
    exposure = exposure_gains(rngs["exposure"], F, look.exposure, config.fps) if look.exposure > 0 else None

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
        gt_joints=gt_joints,
        mesh=_scene_mesh(templates, rigs, skin, arm_look, marks, look.specular),
        mesh_vertices=torch.cat([outs[0].vertices, outs[1].vertices, arms[0], arms[1]], dim=1),
        lighting=lighting,
        room=room,
        c2w=c2w,
        K=torch.from_numpy(pinhole_intrinsics(W, H, config.hfov_deg)).float(),
        lamp=lamp,
        views=views,
        motion=motion,
        look=look,
        objects=objects,
        exposure=exposure,
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
        name: render_room(scene.room, pose[None], K_view[None], W, H, scene.lamp.mean(0, keepdim=True), scene.lighting)
        for name, (pose, K_view) in scene.views.items()
    }
    view_names = list(scene.views)
    # Motion blur averages renders at these sub-frame times; the first is the frame's own time,
    # which alone gives the masks (and the hands' visibility).
    offsets = shutter_offsets(scene.look.shutter, scene.look.blur_samples)

    def render_ego(idx: Tensor) -> _Shot:
        shots = []
        for offset in offsets:
            moment = _moment(scene, idx, offset)
            bg, bg_depth = render_room(scene.room, moment.c2w, K[idx], W, H, moment.lamp, scene.lighting)
            shots.append(_render_layers(scene, moment, moment.c2w, K[idx], bg, bg_depth, ss))
        return _developed(scene, shots, 0, idx)

    def render_view(name: str, idx: Tensor) -> _Shot:
        n = idx.numel()
        pose, K_view = scene.views[name]
        bg, bg_depth = view_backgrounds[name]
        c2w, Ks = pose.expand(n, 4, 4), K_view.expand(n, 3, 3)
        bg, bg_depth = bg.expand(n, -1, -1, -1), bg_depth.expand(n, -1, -1)
        shots = [_render_layers(scene, _moment(scene, idx, t), c2w, Ks, bg, bg_depth, ss) for t in offsets]
        return _developed(scene, shots, 1 + view_names.index(name), idx)

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
        rendering: deque[tuple[Tensor, Future[_Shot], dict[str, Future[_Shot]]]] = deque()
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
                    ego = ego_job.result()
                    visible[done_idx, 0] = torch.from_numpy((ego.hand_labels == 1).sum(axis=(1, 2))).float()
                    visible[done_idx, 1] = torch.from_numpy((ego.hand_labels == 2).sum(axis=(1, 2))).float()
                    shots = {name: job.result() for name, job in view_jobs.items()}
                    views = {name: (shot.frames, shot.labels) for name, shot in shots.items()}
                    writing.append(write_pool.submit(_write_batch, writer, ego.frames, ego.labels, views))
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


@dataclass(frozen=True)
class _Moment:
    """The moving parts of a clip at a batch of (possibly fractional) frame times."""

    verts: Float[Tensor, "B N 3"]
    """Hands and arms."""
    objects: Float[Tensor, "B M 3"] | None
    """Occluding objects, if any."""
    c2w: Float[Tensor, "B 4 4"]
    """Head camera."""
    lamp: Float[Tensor, "B 3"]
    """Head lamp."""


def _moment(scene: ClipScene, idx: Tensor, offset: float) -> _Moment:
    """The scene at frames ``idx + offset`` (offset 0 reads the frames as they are)."""
    return _Moment(
        verts=at_time(scene.mesh_vertices, idx, offset),
        objects=None if scene.objects is None else at_time(scene.objects.vertices, idx, offset),
        c2w=pose_at(scene.c2w, idx, offset),
        lamp=at_time(scene.lamp, idx, offset),
    )


@dataclass(frozen=True)
class _Layers:
    """One render of a batch of frames."""

    rgb: Float[Tensor, "B H W 3"]
    """Colour in [0, 1]."""
    labels: UInt8[Tensor, "B H W"]
    """Mask with the objects."""
    hand_labels: UInt8[Tensor, "B H W"]
    """Mask without them, for the hands' visibility (which objects must not change)."""


def _render_layers(
    scene: ClipScene,
    moment: _Moment,
    c2w: Tensor,
    K: Tensor,
    background: Tensor,
    background_depth: Tensor,
    ss: int,
) -> _Layers:
    """Hands and arms over the room, then the objects over that (occluders where they cover most of a pixel)."""
    frame = render_scene(
        scene.mesh, scene.lighting, moment.verts, c2w, K, moment.lamp, background, background_depth, ss
    )
    if scene.objects is None or moment.objects is None:
        return _Layers(rgb=frame.rgb, labels=frame.labels, hand_labels=frame.labels)
    over = render_scene(
        scene.objects.mesh, scene.lighting, moment.objects, c2w, K, moment.lamp, frame.rgb, frame.depth, ss
    )
    labels = torch.where(over.labels == MASK_OCCLUDER, over.labels, frame.labels)
    return _Layers(rgb=over.rgb, labels=labels, hand_labels=frame.labels)


@dataclass(frozen=True)
class _Shot:
    """What one camera wrote for a batch of frames."""

    frames: UInt8[np.ndarray, "B H W 3"]
    """The frames as written."""
    labels: UInt8[np.ndarray, "B H W"]
    """Their masks."""
    hand_labels: UInt8[np.ndarray, "B H W"]
    """The masks without objects."""


def _developed(scene: ClipScene, shots: list[_Layers], camera: int, frames: Tensor) -> _Shot:
    """The camera's frames from its sub-frame renders (the first at the frame's own time)."""
    rgb = shots[0].rgb if len(shots) == 1 else torch.stack([shot.rgb for shot in shots]).mean(dim=0)
    look = scene.look
    gains = None if scene.exposure is None else scene.exposure[frames.numpy(), camera]
    noise = sensor_noise(tuple(rgb.shape[1:]), scene.config.seed, camera, frames)
    return _Shot(
        frames=develop(rgb, noise, look.noise, gains, look.jpeg_quality),
        labels=shots[0].labels.numpy(),
        hand_labels=shots[0].hand_labels.numpy(),
    )


def _write_batch(
    writer: SequenceWriter, frames: np.ndarray, masks: np.ndarray, views: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    for i in range(frames.shape[0]):
        writer.add_frame(frames[i], masks[i])
        for name, (images, labels) in views.items():
            writer.add_view_frame(name, images[i], labels[i])
