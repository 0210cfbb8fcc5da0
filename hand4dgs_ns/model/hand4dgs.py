"""The Hand-4DGS nerfstudio model: frames in, two hands of mesh-guided Gaussians out.

``get_outputs`` receives only cameras. Which video frame to reconstruct comes from the
camera's ``metadata`` (``sequence_index``, ``frame_index``, set by the hand dataparsers, kept by
eval and ``ns-render dataset`` cameras); cameras without it (the viewer's, camera paths) use
``times`` to pick a frame of ``viewer_sequence``. The hands are predicted in that frame's ego
camera and rendered from whichever camera was given, so novel views need no extra code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.misc import step_check
from nerfstudio.viewer.viewer_elements import ViewerCheckbox
from torch import Tensor
from torch.nn import Parameter
from typing_extensions import assert_never

from hand4dgs_ns.data.sequence_format import occluder_pixels
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.frame_cache import HAND_COLOR_KEY
from hand4dgs_ns.features.frame_inputs import INPUTS_KEY, FrameInputs
from hand4dgs_ns.features.augment import Augment, BoxJitter, CropJitter
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.dataparsers.hand_metadata import METADATA_KEY, HandSequencesMetadata
from hand4dgs_ns.distributed import no_cuda_graphs_under_ddp
from hand4dgs_ns.eval.metrics import hand_crop_metrics, hand_target, mpjpe_mm, square_boxes
from hand4dgs_ns.geometry.alignment import kabsch_rotation, mean_rotation
from hand4dgs_ns.geometry.cameras import invert_rigid, opengl_to_opencv_c2w, project_points, transform_points
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.graphed import GraphedNetwork
from hand4dgs_ns.network.hand_network import HandNetwork, HandsPrediction
from hand4dgs_ns.network.matte import matte_loss, matte_targets
from hand4dgs_ns.network.video_shape import video_shape
from hand4dgs_ns.model.losses import (
    LossSchedule,
    acceleration_loss,
    bone_length_loss,
    coarse_image_loss,
    image_loss,
    occlusion_aware_pair,
    opacity_loss,
    outline_left_out,
    scale_range_loss,
    silhouette_loss,
    vertex_loss,
)
from hand4dgs_ns.render import rasterize
from hand4dgs_ns.render.skeletons import draw_skeletons


@dataclass
class Hand4DGSModelConfig(HandNetworkConfig, ModelConfig):
    """Hand-4DGS (feed-forward 3D Gaussian splatting of hands). Defaults follow the paper where it gives values.

    The network's own options (templates, sizes) are those of :class:`HandNetworkConfig`, inherited."""

    _target: Type = field(default_factory=lambda: Hand4DGSModel)
    vertex_loss_weight: float = 1000.0
    """Weight of the vertex loss (mean squared distance in m^2) to the pseudo-labels."""
    ssim_lambda: float = 0.2
    """lambda in L1 + lambda (1 - SSIM)."""
    image_loss_from: int = 20000
    """First step with the image loss (paper, per-video: 20K of 30K)."""
    vertex_decay_steps: int = 10000
    """Steps over which the vertex weight decays linearly to its floor once the image loss is on
    (0: the floor from the image loss's first step)."""
    vertex_weight_floor: float = 0.0
    """The vertex weight decays to this instead of zero (a fraction of vertex-loss-weight)."""
    relative_vertex_weight: float = 0.0
    """Weight, within the vertex loss, of the same loss on wrist-relative vertices (joints where the
    pseudo-labels have another topology): the articulation apart from the hand's placement (see
    vertex_loss in hand4dgs_ns/model/losses.py). Both methods set 1."""
    bone_loss_weight: float = 0.0
    """Weight, within the vertex loss and on its schedule, of the bone-length loss to the
    pseudo-labels' joints (the hand's size apart from its pose; see bone_length_loss in
    hand4dgs_ns/model/losses.py)."""
    silhouette_loss_weight: float = 1.0
    """Image phase: weight of the silhouette loss, mean |rendered opacity - hand mask| outside occluders
    (0 = off; on the default clip it raised crop PSNR and lowered every pose error, docs/benchmarks.md)."""
    coarse_loss_factors: Tuple[int, ...] = ()
    """Image phase: the colour and silhouette L1 once more on images average-pooled by each of these
    factors (pixels of the rendered images), so a finger drawn beyond its own width from the frame's
    is pulled back. ``hand4dgs`` sets ``8 32`` (the CPU demo, rendering at half size, ``4 16``). Each
    factor adds the channel-summed colour L1 over 2 (1.5x the full-resolution colour L1's scale)
    plus half the silhouette L1, whatever silhouette-loss-weight says; rows and columns past a
    multiple of a factor are left out."""
    mask_outline_band: int = 0
    """Image phase: leave out of the image losses the pixels within this many (rendered) pixels of a
    hand outline of the training masks, either side; for masks drawn from the pseudo-label meshes
    (real footage's), whose outlines sit where the labels put the hands. Evaluation keeps every pixel."""
    mean_color_init: bool = True
    """Start each hand's colour decoder at the training frames' mean hand colour (their masks' hand
    pixels) instead of grey: the decoder learns at the network's rate, too slowly to reach a dark
    skin from grey in a short image phase (CPU demo: +1.0 dB, docs/benchmarks.md). Not with
    pixel-colors, whose decoder corrects the crop's colour (a network reading cached tokens has no
    crops, so it starts from this colour whatever pixel-colors says)."""
    smooth_loss_weight: float = 0.0
    """Image phase: weight of the joint-acceleration penalty (m^2) over each training frame and
    its two neighbours; costs a pose-only forward of two more frames per training frame."""
    scale_range: Tuple[float, float] = (2e-4, 8e-3)
    """Gaussian scales (metres) outside this range are penalised."""
    scale_loss_weight: float = 1.0
    """Weight of the scale-range regulariser."""
    opacity_loss_weight: float = 0.01
    """Weight of the opacity-to-one regulariser."""
    matte_loss_weight: float = 1.0
    """With ``matte``: weight of the matte's cross-entropy against the training masks (every phase)."""
    background: Literal["random", "black", "white"] = "random"
    """Training background: 'random' draws white or black per frame (paper)."""
    eval_background: Literal["black", "white"] = "black"
    """Background for evaluation and rendering."""
    crop_jitter: bool = False
    """Training: jitter the crops' brightness, contrast and colour balance, one transform per video,
    hand and step (hand4dgs_ns/features/augment.py), so the network does not learn the training
    subjects' skin and lighting as part of the hand. Crops only; not with pixel-colors (which
    hand4dgs-generalized uses), whose colours come from the crops. Off by default: on a small
    synthetic set it did not change the zero-shot pose error (docs/benchmarks.md)."""
    box_jitter: bool = False
    """Training: shrink each video's hand boxes by up to 1/1.25 and move them within their cached
    crops, one change per video, hand and step, with the crops resampled to match
    (hand4dgs_ns/features/augment.py): a detector's box errors, so the network corrects a box from
    the image instead of trusting it. Crops only."""
    viewer_sequence: int = 0
    """Sequence shown for cameras without frame metadata (viewer, camera paths)."""
    compile: bool = False
    """torch.compile the network's decoder (both hand branches and their Gaussians) where CUDA graphs are not used
    (evaluation, rendering, CPU training, or cuda-graphs off); the first calls are slow while it compiles."""
    compile_mode: Literal["default", "max-autotune-no-cudagraphs"] = "default"
    """torch.compile mode when compile is on."""
    cuda_graphs: bool = True
    """Training on CUDA: record the network's forward and backward (backbone, both hand branches,
    Gaussians) as CUDA graphs, one per batch size and loss phase, and replay them every step
    (see hand4dgs_ns/network/graphed.py); the backbone then runs on every window frame. About 6x
    faster steps in the vertex phase, 2x in the image phase (docs/benchmarks.md). No effect on a CPU
    or outside training."""
    compile_graphs: bool = True
    """With cuda-graphs: torch.compile the hand branches before recording them, so the graphs hold
    fewer, fused kernels (about 20% faster steps). Each loss phase's first step then compiles:
    ~25-45 s on a fresh machine, 3-5 s once torch's on-disk compile cache holds it (docs/benchmarks.md)."""

    def loss_schedule(self) -> LossSchedule:
        """The step-dependent loss weights these options set (training and test-time optimisation)."""
        return LossSchedule(self.image_loss_from, self.vertex_decay_steps, self.vertex_weight_floor)

    def check(self) -> None:
        """Refuses option combinations the model cannot train with (the pipeline calls this before
        any cache is built; the network again when it is built from this config)."""
        super().check()
        if self.box_jitter and self.estimate_input:
            raise Hand4DGSError(
                "--pipeline.model.box-jitter moves the hand boxes that the per-frame estimates are encoded against: "
                "pass --pipeline.model.box-jitter False or --pipeline.model.estimate-input False."
            )
        if self.box_jitter and self.box_fit:
            raise Hand4DGSError(
                "--pipeline.model.box-jitter moves the hand boxes that --pipeline.model.box-fit centres the hands on: "
                "pass one of them False."
            )
        if self.box_jitter and self.matte:
            raise Hand4DGSError(
                "--pipeline.model.box-jitter moves the hand boxes the matte's crops are cut from, away from its training "
                "masks' boxes: pass one of them False."
            )
        if self.crop_jitter and self.pixel_colors:
            raise Hand4DGSError(
                "--pipeline.model.crop-jitter changes the crops' colours that --pipeline.model.pixel-colors draws the hands with: "
                "pass one of them False."
            )


class Hand4DGSModel(Model):
    """Feed-forward 4D hands: backbone tokens -> TC -> hand mesh -> Gaussians -> gsplat."""

    config: Hand4DGSModelConfig

    def populate_modules(self) -> None:
        metadata = self.kwargs.get("metadata") or {}
        inputs = metadata.get(INPUTS_KEY)
        if not isinstance(inputs, FrameInputs):
            raise ValueError("Hand4DGSModel needs the hand datamanager's frame inputs (use the hand4dgs method's datamanager).")
        self.inputs = inputs  # data, not weights: kept out of the state dict; stays on the host
        self.config = no_cuda_graphs_under_ddp(self.config)
        self._stager: Optional[PinnedStager] = None
        self._jitter_generator = torch.Generator().manual_seed(self.config.seed)
        self.step = 0
        self._metrics_every = 1  # training steps between training metrics: nerfstudio's logging interval once training starts
        self.schedule = self.config.loss_schedule()
        self.network = HandNetwork(self.config, inputs.spec)
        # A checkbox in the browser viewer's panel (nerfstudio finds ViewerElements on the model).
        self.viewer_skeletons = ViewerCheckbox(
            "Hand joints over the splats", False, hint="Draw each hand's predicted skeleton (OpenPose joints) on the render"
        )
        self._graphs: Dict[Tuple[int, bool], GraphedNetwork] = {}  # recorded CUDA graphs, not weights
        self._video_shapes: Dict[int, Tensor] = {}  # per sequence, with video_shape; dropped when the weights train
        hands = metadata.get(METADATA_KEY)
        if isinstance(hands, HandSequencesMetadata):
            for slot, branch in enumerate(self.network.branches):
                if branch.mirrored:  # a shared pose path starts from its own side's orientation
                    continue
                rotation = typical_orientation(branch.hand.template, hands, slot)
                if rotation is not None:
                    branch.initialise_orientation(rotation)
        color = metadata.get(HAND_COLOR_KEY)
        if self.config.mean_color_init and isinstance(color, Tensor):
            for branch in self.network.branches:
                branch.initialise_color(color)
        # Compiled per batch size and phase (a handful of graphs); the backbone stays eager
        # because the number of distinct window frames changes from batch to batch.
        c = self.config
        self._compiled_decode = torch.compile(self.network.decode, mode=c.compile_mode, dynamic=False) if c.compile else None

    # ---- optimisation ------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        gaussians = self.network.gaussian_parameters()
        ids = {id(p) for p in gaussians}
        return {"network": [p for p in self.network.parameters() if id(p) not in ids], "gaussians": gaussians}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def set_step(step: int) -> None:
            self.step = step

        if attrs.trainer is not None:
            self._metrics_every = attrs.trainer.config.logging.steps_per_log

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1)]

    # ---- prediction --------------------------------------------------------------------
    def frame_ids(self, camera: Cameras) -> Tuple[Tensor, Tensor]:
        """(sequence, frame) of each camera, on the host: from metadata, else from ``times`` on the viewer sequence."""
        meta = camera.metadata or {}
        n = int(camera.camera_to_worlds.reshape(-1, 3, 4).shape[0])
        if "frame_index" in meta and "sequence_index" in meta:
            return meta["sequence_index"].reshape(n).long().cpu(), meta["frame_index"].reshape(n).long().cpu()
        s = min(max(self.config.viewer_sequence, 0), len(self.inputs.lengths) - 1)
        length = int(self.inputs.lengths[s])
        times = camera.times.reshape(n).cpu() if camera.times is not None else torch.zeros(n)
        frames = torch.round(times.clamp(0, 1) * (length - 1)).long()
        return torch.full_like(frames, s), frames

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._video_shapes.clear()  # worked out with the weights being replaced
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            # A run resumed (--load-dir) with other network options than it was trained with,
            # typically a default changed since: name the way out instead of torch's list of shapes.
            raise Hand4DGSError(
                "The checkpoint's network was built with other options than this command's (a layer's shape differs): "
                "pass the network options the run was trained with (its config.yml lists them; e.g. "
                "--pipeline.model.pixel-colors, --pipeline.model.estimate-input, the sizes) or load it through that config.yml."
            ) from None

    def reseed(self, offset: int) -> None:
        """Jitters from the stream of a resumed run (see :meth:`Hand4DGSPipeline.reseed`)."""
        self._jitter_generator.manual_seed(self.config.seed + offset)

    def predict_hands(self, sequence: Tensor, frame: Tensor, with_gaussians: bool = True) -> HandsPrediction:
        """Both hands of the given frames (any number, any sequences) in the world frame.

        The frames' windows are gathered on the host and sent to the GPU without waiting for it
        (:class:`PinnedStager`), so a training step never stalls on a host-device round trip.
        """
        if self._stager is None or self._stager.device != self.device:
            self._stager = PinnedStager(self.device)
            self._video_shapes.clear()
        # Graphs need fixed shapes, which splitting the window's frames by gradient (context_gradient off) has not.
        graphed = (
            self.config.cuda_graphs and self.config.context_gradient
            and self.training and torch.is_grad_enabled() and self.device.type == "cuda"
        )
        augment = None
        if (self.config.crop_jitter or self.config.box_jitter) and self.training and torch.is_grad_enabled():
            augment = Augment(
                self._jitter_generator,
                colour=CropJitter() if self.config.crop_jitter else None,
                box=BoxJitter() if self.config.box_jitter else None,
            )
        x = self.inputs.network_inputs(
            sequence, frame, self.config.window // 2, self._stager, distinct=not graphed, augment=augment,
            with_estimates=self.config.estimate_input,
            with_color_crops=with_gaussians or self.network.reads_matte(with_gaussians),
        )
        if self.training:
            self._video_shapes.clear()
        elif self.config.video_shape:
            x = dataclasses.replace(x, betas=self._shapes_of(sequence).to(x.K))
        if not graphed:
            return self.network(x, with_gaussians, self._compiled_decode)
        key = (int(x.window.shape[0]), with_gaussians)
        if key not in self._graphs:
            self._graphs[key] = GraphedNetwork(self.network, x, with_gaussians, self.config.compile_graphs)
        return self._graphs[key](x)

    def _shapes_of(self, sequence: Tensor) -> Float[Tensor, "b 2 k"]:
        """Each frame's video shape (``video_shape``), worked out once per sequence for the weights as they are."""
        for s in torch.unique(sequence).tolist():
            if s not in self._video_shapes:
                self._video_shapes[s] = video_shape(self.network, self.inputs, s, self._stager)
        return torch.stack([self._video_shapes[s] for s in sequence.tolist()])

    # ---- rendering ---------------------------------------------------------------------
    def get_outputs(self, camera: Cameras) -> Dict[str, Tensor]:  # type: ignore[override]
        # The camera is used where it is: the datamanager's stay on the host, so everything
        # below that depends on them is worked out there and sent to the GPU without a wait.
        sequence, frame = self.frame_ids(camera)
        # The vertex-only phase of training needs no image: skip the Gaussians and the render.
        render = not self.training or self.schedule.image_weight(self.step) > 0
        neighbours = render and self.training and torch.is_grad_enabled() and self.config.smooth_loss_weight > 0
        jitter_state = self._jitter_generator.get_state() if neighbours else None
        hands = self.predict_hands(sequence, frame, with_gaussians=render)
        outputs = {"vertices": hands.vertices, "joints": hands.joints, "valid": hands.valid}
        if hands.matte_logits is not None:
            outputs["matte_logits"] = hands.matte_logits
        if not render:
            return outputs
        if neighbours:
            self._jitter_generator.set_state(jitter_state)  # the neighbours' crops get their frame's jitter
            outputs["neighbour_joints"], outputs["neighbours_valid"] = self._neighbours(sequence, frame, hands.valid)
        c2w = camera.camera_to_worlds.reshape(-1, 3, 4)
        bottom = torch.zeros_like(c2w[:, :1])
        bottom[..., 3] = 1.0
        viewmats = invert_rigid(opengl_to_opencv_c2w(torch.cat([c2w, bottom], 1)))
        Ks = camera.get_intrinsics_matrices().reshape(-1, 3, 3)
        shared = bool(torch.equal(Ks, Ks[:1].expand_as(Ks)))
        viewmats, Ks = viewmats.to(self.device, non_blocking=True), Ks.to(self.device, non_blocking=True)
        width, height = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        background = self._backgrounds(len(frame))
        out = rasterize(
            hands.means, hands.quats, hands.scales, hands.opacities, hands.colors, viewmats, Ks, width, height, background,
            # A training step needs no depth (no loss uses it); every other render shows it.
            shared_intrinsics=shared, with_depth=not (self.training and torch.is_grad_enabled()),
        )
        outputs.update(rgb=out.rgb, accumulation=out.alpha, background=background, scales=hands.scales, opacities=hands.opacities)
        if out.depth is not None:
            outputs["depth"] = out.depth
        return outputs

    def _neighbours(self, sequence: Tensor, frame: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Joints of the frames before and after each frame (2, B, 2, 21, 3), pose path only, and
        where all three frames hold the hand (B, 2); frames at a video's ends have no pair."""
        around = self.predict_hands(torch.cat([sequence, sequence]), torch.cat([frame - 1, frame + 1]), with_gaussians=False)
        inside = ((frame >= 1) & (frame <= self.inputs.lengths[sequence] - 2)).to(self.device, non_blocking=True)
        before, after = around.valid.chunk(2)
        return around.joints.unflatten(0, (2, -1)), valid & before & after & inside[:, None]

    def _backgrounds(self, n: int) -> Tensor:
        mode = self.config.background if self.training else self.config.eval_background
        if mode == "random":
            return torch.randint(0, 2, (n, 1), device=self.device).float().expand(n, 3)
        if mode == "black":
            return torch.zeros(n, 3, device=self.device)
        if mode == "white":
            return torch.ones(n, 3, device=self.device)
        assert_never(mode)

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """One camera's images (H, W, C), for eval, ``ns-render`` and the viewer."""
        camera = camera.reshape((1,)) if camera.shape != (1,) else camera
        outputs = self.get_outputs(camera)
        images = {key: outputs[key][0] for key in ("rgb", "accumulation", "depth")}
        # Viewer cameras only (they carry no frame metadata): evaluation renders stay unmarked.
        if self.viewer_skeletons.value and "frame_index" not in (camera.metadata or {}):
            images["rgb"] = self._with_skeletons(images["rgb"], outputs["joints"][0], outputs["valid"][0], camera)
        return images

    def _with_skeletons(self, rgb: Tensor, joints: Tensor, valid: Tensor, camera: Cameras) -> Tensor:
        """``rgb`` (H, W, 3) with both hands' skeletons drawn, as the camera sees the world-frame ``joints`` (2, 21, 3)."""
        c2w = camera.camera_to_worlds.reshape(3, 4).cpu()
        c2w = opengl_to_opencv_c2w(torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]])]))
        K = camera.get_intrinsics_matrices().reshape(3, 3).cpu()
        in_camera = transform_points(invert_rigid(c2w), joints.float().cpu())
        pixels = project_points(K, in_camera)
        pixels[in_camera[..., 2] <= 1e-3] = float("nan")  # behind the camera: not drawn
        image = (rgb.clamp(0, 1) * 255).round().byte().cpu().numpy().copy()
        drawn = draw_skeletons(image, pixels.numpy(), valid.cpu().numpy())
        return torch.from_numpy(drawn).to(rgb.device).float() / 255

    # ---- losses and metrics ------------------------------------------------------------
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        valid = batch["valid"]
        points, target_points = outputs["vertices"], batch.get("pseudo_verts")
        if target_points is None or target_points.shape[-2] != points.shape[-2]:  # pseudo-labels in another topology: supervise the joints
            points, target_points = outputs["joints"], batch["pseudo_joints"]
        vertex = vertex_loss(points, target_points, outputs["joints"], batch["pseudo_joints"], valid, c.relative_vertex_weight)
        vertex_weight = c.vertex_loss_weight * self.schedule.vertex_weight(self.step)
        losses = {"vertex_loss": vertex_weight * vertex}
        if c.bone_loss_weight > 0:
            losses["bone_loss"] = vertex_weight * c.bone_loss_weight * bone_length_loss(outputs["joints"], batch["pseudo_joints"], valid)
        if "matte_logits" in outputs:  # every phase: the matte's loss needs no render
            logits = outputs["matte_logits"]
            targets = matte_targets(batch["hand_mask"], batch["bbox_image"], tuple(logits.shape[-2:]))
            losses["matte_loss"] = c.matte_loss_weight * matte_loss(logits, targets, valid)
        if self.schedule.image_weight(self.step) > 0:
            labels = outline_left_out(batch["hand_mask"], c.mask_outline_band)
            rgb, target = occlusion_aware_pair(outputs["rgb"], batch["image"], labels, outputs["background"])
            losses["image_loss"] = image_loss(rgb, target, c.ssim_lambda)[0]
            losses["scale_loss"] = c.scale_loss_weight * scale_range_loss(outputs["scales"], *c.scale_range)
            losses["opacity_loss"] = c.opacity_loss_weight * opacity_loss(outputs["opacities"], batch["valid"])
            if c.silhouette_loss_weight > 0:
                losses["silhouette_loss"] = c.silhouette_loss_weight * silhouette_loss(outputs["accumulation"], labels)
            if c.coarse_loss_factors:
                losses["coarse_loss"] = coarse_image_loss(rgb, target, outputs["accumulation"], labels, c.coarse_loss_factors)
            if "neighbour_joints" in outputs:
                before, after = outputs["neighbour_joints"]
                acceleration = acceleration_loss(before, outputs["joints"], after, outputs["neighbours_valid"])
                losses["smooth_loss"] = c.smooth_loss_weight * acceleration
        return losses

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        # nerfstudio asks for training metrics every step but logs them every steps_per_log
        # steps; in the vertex phase, where the host's launches set the pace, computing them
        # on the other steps too would cost about a tenth of each step.
        if self.training and not step_check(self.step, self._metrics_every, run_at_zero=True):
            return {}
        metrics = {"pseudo_mpjpe_mm": mpjpe_mm(outputs["joints"].detach(), batch["pseudo_joints"], batch["valid"])}
        if "gt_joints" in batch:
            # As ns-eval counts them: a hand without a usable box has no prediction to measure.
            valid = batch["gt_valid"] & batch["valid"]
            metrics["gt_mpjpe_mm"] = mpjpe_mm(outputs["joints"].detach(), batch["gt_joints"], valid)
        return metrics

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Hand-crop PSNR/SSIM of one frame, on the tight boxes and on squares twice their size."""
        image = batch["image"].reshape(-1, *batch["image"].shape[-3:])[0].to(self.device)
        labels = batch["hand_mask"].reshape(-1, *batch["hand_mask"].shape[-2:])[0].to(self.device)
        rgb = outputs["rgb"]
        background = 0.0 if self.config.eval_background == "black" else 1.0
        target = hand_target(image, labels, background)
        boxes = batch["bbox_image"].reshape(-1, 2, 4)[0][batch["valid"].reshape(-1, 2)[0]]
        metrics: Dict[str, float] = {}
        # The tight hand boxes, and HaMeR-style squares twice their size (the paper's crops).
        for suffix, crops in (("", boxes), ("_square", square_boxes(boxes))):
            psnrs, ssims = hand_crop_metrics(rgb, image, labels, crops, background)
            if psnrs:
                metrics["psnr" + suffix] = float(sum(psnrs) / len(psnrs))
                metrics["ssim" + suffix] = float(sum(ssims) / len(ssims))
        # The occluder pixels too (1 where something else is in front of the hands): the metrics count
        # the render as right there, and scripts/error_split.py scores them so too.
        images = {
            "img": torch.cat([target, rgb.clamp(0, 1)], dim=1),
            "accumulation": outputs["accumulation"],
            "occluders": occluder_pixels(labels)[..., None].float(),
        }
        return metrics, images


def typical_orientation(template: HandTemplate, hands: HandSequencesMetadata, slot: int) -> Optional[Tensor]:
    """Mean camera-frame orientation of one hand's pseudo-labels on the training frames.

    Each valid frame's pseudo joints are Kabsch-aligned to the template's rest joints; the
    rotations are averaged. Pseudo-labels are training data, so this uses nothing held out.
    """
    eye = torch.eye(3).expand(1, template.num_joints, 3, 3)
    rest = hand_forward(template, eye[:, 0], eye[:, 1:], torch.zeros(1, template.num_betas), torch.zeros(1, 3)).joints[0]
    sequence_index, frame_index = hands.sequence_index.tolist(), hands.frame_index.tolist()
    valid = torch.stack([hands.sequences[s].valid[f, slot] for s, f in zip(sequence_index, frame_index)])
    if not valid.any():
        return None
    c2w = torch.stack([hands.sequences[s].c2w[f] for s, f in zip(sequence_index, frame_index)])
    joints = torch.stack([hands.sequences[s].pseudo_joints[f, slot] for s, f in zip(sequence_index, frame_index)])
    rotations = kabsch_rotation(rest.expand_as(joints), transform_points(invert_rigid(c2w), joints))
    return mean_rotation(rotations, valid)
