"""The Hand-4DGS nerfstudio model: frames in, two hands of mesh-guided Gaussians out.

``get_outputs`` receives only cameras. Which video frame to reconstruct comes from the
camera's ``metadata`` (``sequence_index``, ``frame_index``, set by the hand dataparsers, kept by
eval and ``ns-render dataset`` cameras); cameras without it (the viewer's, camera paths) use
``times`` to pick a frame of ``viewer_sequence``. The hands are predicted in that frame's ego
camera and rendered from whichever camera was given, so novel views need no extra code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.misc import step_check
from torch import Tensor
from torch.nn import Parameter
from typing_extensions import assert_never

from hand4dgs_ns.features.frame_inputs import INPUTS_KEY, FrameInputs
from hand4dgs_ns.dataparsers.hand_metadata import METADATA_KEY, HandSequencesMetadata
from hand4dgs_ns.eval.metrics import crop_image_metrics, mpjpe_mm
from hand4dgs_ns.geometry.alignment import kabsch_rotation, mean_rotation
from hand4dgs_ns.geometry.cameras import invert_rigid, opengl_to_opencv_c2w, transform_points
from hand4dgs_ns.hands.lbs import hand_forward
from hand4dgs_ns.hands.template import HandTemplate, load_template
from hand4dgs_ns.network.graphed import NetworkStep, graphed_network
from hand4dgs_ns.network.hand_branch import BranchSizes, HandBranch
from hand4dgs_ns.network.layers import squash_tokens
from hand4dgs_ns.model.losses import (
    LossSchedule,
    image_loss,
    masked_target,
    opacity_loss,
    point_loss,
    scale_range_loss,
)
from hand4dgs_ns.features.backbones import SmallCNN, SmallCNNConfig
from hand4dgs_ns.features.crops import normalize_imagenet, normalized_frame_boxes, uint8_crops_to_input
from hand4dgs_ns.render import rasterize

SIDES = ("left", "right")


@dataclass
class Hand4DGSModelConfig(ModelConfig):
    """Hand-4DGS (feed-forward 3D Gaussian splatting of hands). Defaults follow the paper where it gives values."""

    _target: Type = field(default_factory=lambda: Hand4DGSModel)
    template: Literal["open", "mano"] = "open"
    """Hand template: 'open' (shipped, no licence needed) or 'mano' (needs --pipeline.model.mano-dir)."""
    mano_dir: Optional[Path] = None
    """Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (from the MANO website, after registration);
    default: the folder in the environment variable HAND4DGS_MANO_DIR."""
    window: int = 5
    """Frames in the temporal window (2k+1, odd). 1 is the paper's 'no TC' ablation."""
    tc_dim: int = 32
    """Channels per token after the temporal convolution."""
    token_scale: float = 3.0
    """Scale of the tanh squashing applied to backbone tokens."""
    head_width: int = 512
    """Hidden width of the shape, pose and translation MLPs (paper: 512)."""
    head_layers: int = 4
    """Layers of the shape, pose and translation MLPs (paper: 4)."""
    embed_dim: int = 32
    """Per-vertex embedding size."""
    embed_rank: int = 64
    """Rank of the embedding layer (a low-rank linear map from features to V x embed_dim)."""
    appearance_width: int = 64
    """Hidden width of the 2-layer colour and scale MLPs (paper: 64)."""
    gaussians_per_face: int = 10
    """Gaussians sampled in each face, besides one per vertex (paper: 10)."""
    per_gaussian_embeddings: bool = False
    """Ablation: predict every Gaussian's embedding directly instead of interpolating vertex embeddings."""
    hand_extent_m: float = 0.18
    """Typical extent of a hand (metres): the translation prior puts a hand of this size in its box."""
    seed: int = 0
    """Seed of the fixed Gaussian placements."""
    vertex_loss_weight: float = 1000.0
    """Weight of the vertex loss (mean squared distance in m^2) to the pseudo-labels."""
    ssim_lambda: float = 0.2
    """lambda in L1 + lambda (1 - SSIM)."""
    image_loss_from: int = 20000
    """First step with the image loss (paper, per-video: 20K of 30K)."""
    vertex_decay_steps: int = 10000
    """Steps over which the vertex weight decays linearly to zero once the image loss is on."""
    scale_range: Tuple[float, float] = (2e-4, 8e-3)
    """Gaussian scales (metres) outside this range are penalised."""
    scale_loss_weight: float = 1.0
    """Weight of the scale-range regulariser."""
    opacity_loss_weight: float = 0.01
    """Weight of the opacity-to-one regulariser."""
    background: Literal["random", "black", "white"] = "random"
    """Training background: 'random' draws white or black per frame (paper)."""
    eval_background: Literal["black", "white"] = "black"
    """Background for evaluation and rendering."""
    viewer_sequence: int = 0
    """Sequence shown for cameras without frame metadata (viewer, camera paths)."""
    compile: bool = False
    """torch.compile both hand branches and their Gaussians where CUDA graphs are not used
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


@dataclass(frozen=True)
class HandsPrediction:
    """Both hands of B frames, world frame; slot 0 left, 1 right."""

    vertices: Tensor  # (B, 2, V, 3)
    joints: Tensor  # (B, 2, 21, 3)
    valid: Tensor  # (B, 2)
    means: Optional[Tensor]  # (B, 2G, 3) Gaussians of both hands, left first; None when not asked for
    quats: Optional[Tensor]
    scales: Optional[Tensor]
    opacities: Optional[Tensor]
    colors: Optional[Tensor]


class Hand4DGSModel(Model):
    """Feed-forward 4D hands: backbone tokens -> TC -> hand mesh -> Gaussians -> gsplat."""

    config: Hand4DGSModelConfig

    def populate_modules(self) -> None:
        metadata = self.kwargs.get("metadata") or {}
        inputs = metadata.get(INPUTS_KEY)
        if not isinstance(inputs, FrameInputs):
            raise ValueError("Hand4DGSModel needs the hand datamanager's frame inputs (use the hand4dgs method's datamanager).")
        if self.config.window < 1 or self.config.window % 2 == 0:
            raise ValueError(f"window must be a positive odd number of frames, got {self.config.window}")
        self.inputs = inputs  # data, not weights: kept out of the state dict; stays on the host
        self._inputs_on_device = inputs
        self._inputs_device: Optional[torch.device] = None
        self.step = 0
        self._metrics_every = 1  # training steps between training metrics: nerfstudio's logging interval once training starts
        self.schedule = LossSchedule(self.config.image_loss_from, self.config.vertex_decay_steps)
        if inputs.kind == "crops":
            h, w = inputs.data.shape[-2:]
            self.backbone: Optional[SmallCNN] = SmallCNN(SmallCNNConfig(input_hw=(int(h), int(w))))
            num_tokens, token_dim = self.backbone.num_tokens, self.backbone.token_dim
        else:
            self.backbone = None
            num_tokens, token_dim = int(inputs.data.shape[-2]), int(inputs.data.shape[-1])
        self.token_shape = (num_tokens, token_dim)
        self._graphs: Dict[Tuple[int, bool], NetworkStep] = {}  # recorded CUDA graphs, not weights
        c = self.config
        sizes = BranchSizes(
            window=c.window, tc_dim=c.tc_dim, head_width=c.head_width, head_layers=c.head_layers, embed_dim=c.embed_dim,
            embed_rank=c.embed_rank, appearance_width=c.appearance_width, gaussians_per_face=c.gaussians_per_face,
            per_gaussian_embeddings=c.per_gaussian_embeddings, hand_extent_m=c.hand_extent_m, seed=c.seed,
        )
        self.branches = torch.nn.ModuleList(
            HandBranch(load_template(c.template, side, c.mano_dir), num_tokens, token_dim, sizes) for side in SIDES
        )
        hands = metadata.get(METADATA_KEY)
        if isinstance(hands, HandSequencesMetadata):
            for slot, branch in enumerate(self.branches):
                rotation = typical_orientation(branch.hand.template, hands, slot)
                if rotation is not None:
                    branch.initialise_orientation(rotation)
        # Compiled per batch size and phase (a handful of graphs); the backbone stays eager
        # because the number of distinct window frames changes from batch to batch.
        self._compiled_hands = torch.compile(self._hands, mode=c.compile_mode, dynamic=False) if c.compile else None

    # ---- optimisation ------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        gaussians = [p for b in self.branches for p in (b.log_scale_base, b.opacity_logit)]
        ids = {id(p) for p in gaussians}
        network = [p for p in self.parameters() if id(p) not in ids and p is not self.device_indicator_param]
        return {"network": network, "gaussians": gaussians}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def set_step(step: int) -> None:
            self.step = step

        if attrs.trainer is not None:
            self._metrics_every = attrs.trainer.config.logging.steps_per_log

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1)]

    # ---- prediction --------------------------------------------------------------------
    def _device_inputs(self) -> FrameInputs:
        """The frame inputs on the model's device (``self.inputs`` stays on the host for indexing)."""
        if self._inputs_device != self.device:
            self._inputs_on_device = self.inputs.to(self.device)
            self._inputs_device = self.device
        return self._inputs_on_device

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

    def predict_hands(self, sequence: Tensor, frame: Tensor, with_gaussians: bool = True) -> HandsPrediction:
        """Both hands of the given frames (any number, any sequences) in the world frame.

        Rows and windows are worked out on the host from host indices and sent to the GPU
        without waiting for it, so a training step never stalls on a host-device round trip.
        """
        inputs = self._device_inputs()
        sequence, frame = sequence.cpu(), frame.cpu()
        window = self.inputs.window_rows(sequence, frame, self.config.window // 2)  # (B, W)
        rows, hw = (
            t.to(self.device, non_blocking=True) for t in (self.inputs.rows(sequence, frame), self.inputs.image_hw[sequence])
        )
        if self.config.cuda_graphs and self.training and torch.is_grad_enabled() and self.device.type == "cuda":
            return self._predict_graphed(rows, window.to(self.device, non_blocking=True), hw, with_gaussians)
        bbox = inputs.bbox[rows]
        box_norm = normalized_frame_boxes(bbox, hw)
        # Neighbouring frames share most of their windows: each distinct frame goes through the
        # backbone once (consecutive frames at evaluation: about W times fewer backbone passes).
        distinct, inverse = (t.to(self.device, non_blocking=True) for t in torch.unique(window, return_inverse=True))
        tokens = tuple(self._tokens(inputs.data[distinct, slot])[inverse] for slot in range(len(SIDES)))  # (B, W, N, C) each
        predict = self._compiled_hands if self._compiled_hands is not None else self._hands
        valid, K, c2w = inputs.valid[rows], inputs.K[rows], inputs.c2w[rows]
        return HandsPrediction(*predict(tokens, box_norm, bbox, valid, K, c2w, with_gaussians))

    def _predict_graphed(self, rows: Tensor, window: Tensor, hw: Tensor, with_gaussians: bool) -> HandsPrediction:
        """:meth:`predict_hands` through the recorded CUDA graph of this batch size and phase."""
        key = (int(rows.shape[0]), with_gaussians)
        if key not in self._graphs:
            self._graphs[key] = graphed_network(self, window, rows, hw, with_gaussians)
        verts, joints, *gaussians = self._graphs[key](window, rows, hw)
        parts = gaussians if with_gaussians else [None] * 5
        return HandsPrediction(verts, joints, self._device_inputs().valid[rows], *parts)

    def _hands(
        self,
        tokens: Tuple[Tensor, ...],
        box_norm: Tensor,
        bbox: Tensor,
        valid: Tensor,
        K: Tensor,
        c2w: Tensor,
        with_gaussians: bool,
    ) -> Tuple[Optional[Tensor], ...]:
        """The static-shape part of :meth:`predict_hands` (what ``compile`` compiles): both branches, world frame, Gaussians."""
        verts, joints, gaussians = [], [], []
        for slot, branch in enumerate(self.branches):
            mesh = branch(tokens[slot], box_norm[:, slot], bbox[:, slot], K)
            v_world = transform_points(c2w, mesh.vertices)
            verts.append(v_world)
            joints.append(transform_points(c2w, mesh.joints))
            if with_gaussians:
                g = branch.gaussians(v_world, mesh.embeddings)
                gaussians.append((g.means, g.quats, g.scales, g.opacities * valid[:, slot, None].float(), g.colors))
        parts = [torch.cat(p, dim=1) for p in zip(*gaussians)] if with_gaussians else [None] * 5
        return (torch.stack(verts, 1), torch.stack(joints, 1), valid, *parts)

    def _tokens(self, data: Tensor) -> Tensor:
        """Squashed backbone tokens of some rows of one hand's ``data`` -> (n, N, C)."""
        if self.backbone is not None:
            tokens = self.backbone(normalize_imagenet(uint8_crops_to_input(data)))
        else:
            tokens = data.float()
        return squash_tokens(tokens, self.config.token_scale)

    # ---- rendering ---------------------------------------------------------------------
    def get_outputs(self, camera: Cameras) -> Dict[str, Tensor]:  # type: ignore[override]
        # The camera is used where it is: the datamanager's stay on the host, so everything
        # below that depends on them is worked out there and sent to the GPU without a wait.
        sequence, frame = self.frame_ids(camera)
        # The vertex-only phase of training needs no image: skip the Gaussians and the render.
        render = not self.training or self.schedule.image_weight(self.step) > 0
        hands = self.predict_hands(sequence, frame, with_gaussians=render)
        outputs = {"vertices": hands.vertices, "joints": hands.joints, "valid": hands.valid}
        if not render:
            return outputs
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
        outputs = self.get_outputs(camera.reshape((1,)) if camera.shape != (1,) else camera)
        return {key: outputs[key][0] for key in ("rgb", "accumulation", "depth")}

    # ---- losses and metrics ------------------------------------------------------------
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        valid = batch["valid"]
        target_verts = batch.get("pseudo_verts")
        if target_verts is not None and target_verts.shape[-2] == outputs["vertices"].shape[-2]:
            vertex = point_loss(outputs["vertices"], target_verts, valid)
        else:  # pseudo-labels in another topology: supervise the joints
            vertex = point_loss(outputs["joints"], batch["pseudo_joints"], valid)
        losses = {"vertex_loss": c.vertex_loss_weight * self.schedule.vertex_weight(self.step) * vertex}
        if self.schedule.image_weight(self.step) > 0:
            hand = (batch["hand_mask"] > 0).float()[..., None]
            target = masked_target(batch["image"], hand, outputs["background"])
            losses["image_loss"] = image_loss(outputs["rgb"], target, c.ssim_lambda)[0]
            losses["scale_loss"] = c.scale_loss_weight * scale_range_loss(outputs["scales"], *c.scale_range)
            losses["opacity_loss"] = c.opacity_loss_weight * opacity_loss(outputs["opacities"], batch["valid"])
        return losses

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        # nerfstudio asks for training metrics every step but logs them every steps_per_log
        # steps; in the vertex phase, where the host's launches set the pace, computing them
        # on the other steps too would cost about a tenth of each step.
        if self.training and not step_check(self.step, self._metrics_every, run_at_zero=True):
            return {}
        metrics = {"pseudo_mpjpe_mm": mpjpe_mm(outputs["joints"].detach(), batch["pseudo_joints"], batch["valid"])}
        if "gt_joints" in batch:
            metrics["gt_mpjpe_mm"] = mpjpe_mm(outputs["joints"].detach(), batch["gt_joints"], batch["gt_valid"])
        return metrics

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Hand-crop PSNR/SSIM of one frame and, with ground truth, its pose errors."""
        image = batch["image"].reshape(-1, *batch["image"].shape[-3:])[0].to(self.device)
        mask = (batch["hand_mask"].reshape(-1, *batch["hand_mask"].shape[-2:])[0] > 0).float()[..., None].to(self.device)
        rgb = outputs["rgb"]
        background = rgb.new_tensor(0.0 if self.config.eval_background == "black" else 1.0).expand(3)
        target = image * mask + background * (1 - mask)
        boxes = batch["bbox_image"].reshape(-1, 2, 4)[0][batch["valid"].reshape(-1, 2)[0]]
        psnrs, ssims = crop_image_metrics(rgb, target, boxes)
        metrics: Dict[str, float] = {}
        if psnrs:
            metrics["psnr"] = float(sum(psnrs) / len(psnrs))
            metrics["ssim"] = float(sum(ssims) / len(ssims))
        images = {"img": torch.cat([target, rgb.clamp(0, 1)], dim=1), "accumulation": outputs["accumulation"]}
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
