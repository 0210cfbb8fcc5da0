"""The index-free Hand-4DGS network: a window of frames' backbone inputs in, both hands out.

The network knows nothing of datasets: it receives, for any batch of frames, the backbone
inputs (crops or cached tokens) of the frames their temporal windows need, each predicted
frame's window as rows into those inputs (with ``estimate_input``, each of those frames' per-frame
hand estimates too), its hand boxes and its ego camera, and returns the
hands (mesh, joints, template parameters, Gaussians) in the world frame. The nerfstudio model
feeds it training frames; ``hand4dgs infer`` feeds it the frames of a video it never saw.

Slot 0 is the left hand, 1 the right (:data:`HAND_SIDES`); each side has its own branch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from hand4dgs_ns.constants import constant
from hand4dgs_ns.data.sequence_format import HAND_SIDES
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones import SmallCNN, SmallCNNConfig
from hand4dgs_ns.features.crops import normalize_imagenet, normalized_frame_boxes, uint8_crops_to_input
from hand4dgs_ns.features.estimates import ESTIMATE_DIM, MIRROR_SIGNS
from hand4dgs_ns.gaussians import SphericalHarmonicLight
from hand4dgs_ns.geometry.cameras import transform_points
from hand4dgs_ns.hands.template import load_template
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.hand_branch import HandBranch
from hand4dgs_ns.network.layers import squash_tokens
from hand4dgs_ns.network.matte import HandMatte

GAUSSIAN_FIELDS = ("means", "quats", "scales", "opacities", "colors")
"""The :class:`HandsPrediction` fields that hold the Gaussians (None when not asked for)."""
MATTE_FIELD = "matte_logits"
"""The :class:`HandsPrediction` field of a network with a matte, beside the Gaussians."""


@dataclass(frozen=True)
class InputSpec:
    """What the backbone inputs of one hand in one frame are."""

    kind: Literal["crops", "tokens"]
    """``crops``: uint8 hand crops for a backbone trained with the network; ``tokens``: a frozen backbone's tokens."""
    shape: tuple[int, ...]
    """``(3, h, w)`` for crops, ``(tokens, channels)`` for tokens."""


@dataclass(frozen=True)
class NetworkInputs:
    """A batch of B frames to predict, with the U frames their windows draw on."""

    frames: Tensor
    """(U, 2, 3, h, w) uint8 crops or (U, 2, tokens, channels) tokens; slot 0 left, 1 right."""
    window: Int[Tensor, "B W"]
    """Each predicted frame's temporal window ``[t-k, t+k]`` as rows of ``frames`` (edges replicated)."""
    bbox: Float[Tensor, "B 2 4"]
    """Hand boxes, xyxy pixels of the ego frame."""
    valid: Bool[Tensor, "B 2"]
    """Hand present: invalid hands get zero opacity."""
    K: Float[Tensor, "B 3 3"]
    """Ego camera intrinsics."""
    c2w: Float[Tensor, "B 4 4"]
    """Ego camera-to-world, OpenCV axes."""
    image_hw: Int[Tensor, "B 2"]
    """Ego frame height and width."""
    estimates: Optional[Float[Tensor, "U 2 E"]] = None
    """Each of the U frames' encoded per-frame hand estimates (:mod:`hand4dgs_ns.features.estimates`),
    rows like ``frames``; needed by a network built with ``estimate_input`` only."""
    color_crops: Optional[Tensor] = None
    """(B, 2, 3, H, W) uint8 crops of the B predicted frames, cut like ``frames``' but larger, that
    ``pixel_colors`` reads instead of ``frames``' centre rows."""
    betas: Optional[Float[Tensor, "B 2 K"]] = None
    """Each hand's shape coefficients for these frames, in place of the network's per-frame ones
    (a video's shape, :func:`~hand4dgs_ns.network.video_shape.video_shape`); None: predicted per frame."""


class HandsPrediction(NamedTuple):
    """Both hands of B frames; slot 0 left, 1 right. Gaussians are those of both hands, left first
    (G per hand), or None when not asked for. A NamedTuple, so compiled code can return it."""

    vertices: Float[Tensor, "B 2 V 3"]
    """Mesh vertices, world frame (metres)."""
    joints: Float[Tensor, "B 2 21 3"]
    """Joints in OpenPose order, world frame (metres)."""
    valid: Bool[Tensor, "B 2"]
    """Hand present (the input's flags)."""
    betas: Optional[Float[Tensor, "B 2 K"]] = None
    """Template shape coefficients."""
    global_orient: Optional[Float[Tensor, "B 2 3 3"]] = None
    """Wrist rotation, camera frame."""
    hand_pose: Optional[Float[Tensor, "B 2 J 3 3"]] = None
    """Rotations of the template's non-root joints relative to their parents (15 for MANO, 19 for the open hand)."""
    translation: Optional[Float[Tensor, "B 2 3"]] = None
    """Template translation, camera frame (metres)."""
    means: Optional[Float[Tensor, "B N 3"]] = None
    """Gaussian centres, world frame (N = 2G)."""
    quats: Optional[Float[Tensor, "B N 4"]] = None
    """Gaussian rotations, wxyz."""
    scales: Optional[Float[Tensor, "B N 3"]] = None
    """Gaussian scales (metres)."""
    opacities: Optional[Float[Tensor, "B N"]] = None
    """Gaussian opacities (zero for invalid hands)."""
    colors: Optional[Float[Tensor, "B N 3"]] = None
    """Gaussian colours, RGB: in [0, 1] times the colour gain and, with ``shading``, the light (above 1 where brightly lit)."""
    matte_logits: Optional[Float[Tensor, "B 2 h w"]] = None
    """With ``matte``, each hand's matte over its colour crop (logits; the left hand's mirrored, as its crop)."""

    def without_gaussians(self) -> HandsPrediction:
        """The same hands without their Gaussians (what a whole video keeps of each batch)."""
        return self._replace(**dict.fromkeys(GAUSSIAN_FIELDS + (MATTE_FIELD,)))


Decoder = Callable[..., HandsPrediction]


class HandNetwork(nn.Module):
    """Backbone (when trained with the network) -> per-hand TC, heads, template -> mesh-guided Gaussians."""

    def __init__(self, config: HandNetworkConfig, inputs: InputSpec):
        super().__init__()
        config.check()
        if inputs.kind != "crops":  # cached tokens come without crops or feature maps to sample
            config = dataclasses.replace(config, pixel_colors=False, pixel_feedback=False)
        if config.matte and not config.pixel_colors:  # cached tokens: no colour crops for the matte either
            config = dataclasses.replace(config, matte=False)
        self.config = config
        self.input_spec = inputs
        if inputs.kind == "crops":
            self.backbone: Optional[SmallCNN] = SmallCNN(
                SmallCNNConfig(input_hw=(int(inputs.shape[1]), int(inputs.shape[2])), channels=tuple(config.cnn_channels))
            )
            self.token_shape = (self.backbone.num_tokens, self.backbone.token_dim)
        else:
            self.backbone = None
            self.token_shape = (int(inputs.shape[0]), int(inputs.shape[1]))
        self.estimate_embed: Optional[nn.ModuleList] = None
        if config.estimate_input:  # one more token per hand: the frame's estimate, embedded
            embeds = [nn.Linear(ESTIMATE_DIM, self.token_shape[1]) for _ in HAND_SIDES]
            if config.mirrored_pose:  # read in the mirror by the shared pose path, as the crops are
                embeds[0] = embeds[1]
            self.estimate_embed = nn.ModuleList(embeds)
            self.token_shape = (self.token_shape[0] + 1, self.token_shape[1])
        map_channels = self.backbone.map_channels if self.backbone is not None else 0
        self.branches = nn.ModuleList(
            HandBranch(load_template(config.template, side, config.mano_dir), *self.token_shape, config, map_channels) for side in HAND_SIDES
        )
        if config.mirrored_pose:
            self.branches[0].share_pose_path(self.branches[1])
        # One light for both hands: they are lit by the same room.
        self.light = SphericalHarmonicLight() if config.shading else None
        # One matte for both hands: the left hand's crops are mirrored, so it sees right hands only.
        self.matte = HandMatte() if config.matte else None

    # ---- parameter groups (test-time optimisation with --no-free-pose fine-tunes the appearance ones)
    def appearance_parameters(self) -> list[nn.Parameter]:
        """Parameters that change how the hands look, not where they are."""
        matte = list(self.matte.parameters()) if self.matte is not None else []
        return [p for branch in self.branches for p in branch.appearance_parameters()] + self._light_parameters() + matte

    def pose_parameters(self) -> list[nn.Parameter]:
        """Parameters that place the hands: the backbone (when trained), the estimate embedding (when read), TC
        layers, shape, pose and translation heads."""
        modules = ([self.backbone] if self.backbone is not None else []) + [m for b in self.branches for m in b.pose_modules()]
        modules += [self.estimate_embed] if self.estimate_embed is not None else []
        return list({id(p): p for m in modules for p in m.parameters()}.values())  # once each, shared ones too

    def gaussian_parameters(self) -> list[nn.Parameter]:
        """Per-Gaussian tables (base scales, opacities) and the learned light: trained with their own learning rate."""
        return [p for b in self.branches for p in (b.log_scale_base, b.opacity_logit)] + self._light_parameters()

    def _light_parameters(self) -> list[nn.Parameter]:
        return list(self.light.parameters()) if self.light is not None else []

    # ---- prediction -----------------------------------------------------------------------
    def reads_matte(self, with_gaussians: bool) -> bool:
        """Whether a forward computes the matte (and so reads the colour crops): with the Gaussians it
        gates, and in every training step besides, since its loss needs no render and it trains from
        the first step."""
        return self.matte is not None and (with_gaussians or (self.training and torch.is_grad_enabled()))

    def tokens(self, frames: Tensor) -> tuple[Float[Tensor, "U N C"], Optional[Float[Tensor, "U M h w"]]]:
        """Squashed backbone tokens of n hand inputs, crops (n, 3, h, w) or cached tokens (n, N, C), and
        with ``pixel_feedback`` the backbone's feature map of each crop (else None)."""
        if self.backbone is None:
            return squash_tokens(frames.float(), self.config.token_scale), None
        tokens, feature_map = self.backbone.forward_with_map(normalize_imagenet(uint8_crops_to_input(frames)))
        return squash_tokens(tokens, self.config.token_scale), feature_map if self.config.pixel_feedback else None

    def hands_tokens(
        self, x: NetworkInputs, centre: Optional[Tensor] = None
    ) -> tuple[Float[Tensor, "U 2 N C"], Optional[Float[Tensor, "U 2 M h w"]]]:
        """Both hands' tokens of the U input frames (the backbone's, then its estimate's when the network
        reads it) and the crops' feature maps (:meth:`tokens`). The 2U crops go through the backbone as
        one batch (a CPU step's convolutions run about 1.2x faster than as two). With ``centre`` (indices
        into U), only those frames are encoded with gradient (``context_gradient`` off)."""
        frames = x.frames.flatten(0, 1)  # (2U, ...): frame-major, hand-minor
        if centre is None:
            tokens, feature_map = self.tokens(frames)
        else:
            tokens, feature_map = self._tokens_centre_gradient(frames, torch.stack([2 * centre, 2 * centre + 1], -1).flatten())
        tokens = tokens.unflatten(0, (-1, 2))
        feature_map = None if feature_map is None else feature_map.unflatten(0, (-1, 2))
        if self.estimate_embed is None:
            return tokens, feature_map
        if x.estimates is None:
            raise Hand4DGSError(
                "This network reads each frame's hand estimate (it was trained with --pipeline.model.estimate-input True), "
                "but its inputs carry none: give it clips with pseudo_joints in hands.npz."
            )
        embedded = []
        for slot in range(2):
            estimate = x.estimates[:, slot]
            if slot == 0 and self.config.mirrored_pose:
                estimate = estimate * constant(MIRROR_SIGNS, estimate.device, estimate.dtype)
            embedded.append(torch.tanh(self.estimate_embed[slot](estimate)))
        return torch.cat([tokens, torch.stack(embedded, 1)[:, :, None]], dim=2), feature_map

    def _tokens_centre_gradient(self, frames: Tensor, centre: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """:meth:`tokens` of every input, with gradient through the ``centre`` rows only (indices into
        ``frames``). The backbone normalises each crop on its own (GroupNorm), so splitting the batch
        leaves the values as they are."""
        is_centre = torch.zeros(frames.shape[0], dtype=torch.bool, device=frames.device)
        is_centre[centre] = True
        inner, outer = is_centre.nonzero()[:, 0], (~is_centre).nonzero()[:, 0]
        if outer.numel() == 0:  # every frame read is also predicted (clamped windows of a short run)
            return self.tokens(frames)
        tokens, feature_map = self.tokens(frames.index_select(0, inner))
        with torch.no_grad():
            context, context_map = self.tokens(frames.index_select(0, outer))
        merged = tokens.new_empty((frames.shape[0], *tokens.shape[1:]))
        merged = merged.index_copy(0, inner, tokens).index_copy(0, outer, context)
        if feature_map is None:
            return merged, None
        merged_map = feature_map.new_empty((frames.shape[0], *feature_map.shape[1:]))
        return merged, merged_map.index_copy(0, inner, feature_map).index_copy(0, outer, context_map)

    def forward(self, x: NetworkInputs, with_gaussians: bool = True, decoder: Optional[Decoder] = None) -> HandsPrediction:
        """Both hands of every frame of ``x``; ``decoder`` may be a compiled :meth:`decode`."""
        b, w = x.window.shape
        flat, centre = x.window.reshape(-1), x.window[:, w // 2]
        split = not self.config.context_gradient and self.backbone is not None and w > 1 and torch.is_grad_enabled()
        tokens, maps = self.hands_tokens(x, centre if split else None)
        windows = tuple(tokens[:, slot].index_select(0, flat).reshape(b, w, *self.token_shape) for slot in range(2))
        feature_maps = None
        if maps is not None:  # pixel_feedback: the maps of each predicted frame's window, (B, 2, W, M, h, w)
            feature_maps = maps.index_select(0, flat).reshape(b, w, *maps.shape[1:]).transpose(1, 2)
        box_norm = normalized_frame_boxes(x.bbox, x.image_hw)
        with_matte = self.reads_matte(with_gaussians)
        crops = mattes = None
        if self.config.pixel_colors and (with_gaussians or with_matte):  # each predicted frame's own crops, [0, 1]
            source = x.color_crops if x.color_crops is not None else x.frames.index_select(0, centre)
            crops = source.float() / 255.0
            if with_matte:
                mattes = self.matte(crops.flatten(0, 1)).unflatten(0, (b, 2))
        decode = decoder if decoder is not None else self.decode
        image_wh = x.image_hw.flip(-1).to(x.K.dtype)
        prediction = decode(
            windows[0], windows[1], box_norm, x.bbox, x.valid, x.K, x.c2w, with_gaussians, crops, feature_maps, image_wh, x.betas, mattes
        )
        return prediction if mattes is None else prediction._replace(matte_logits=mattes)

    def decode(
        self,
        left: Float[Tensor, "B W N C"],
        right: Float[Tensor, "B W N C"],
        box_norm: Float[Tensor, "B 2 4"],
        bbox: Float[Tensor, "B 2 4"],
        valid: Bool[Tensor, "B 2"],
        K: Float[Tensor, "B 3 3"],
        c2w: Float[Tensor, "B 4 4"],
        with_gaussians: bool,
        crops: Optional[Float[Tensor, "B 2 3 h w"]] = None,
        feature_maps: Optional[Float[Tensor, "B 2 W M h w"]] = None,
        image_wh: Optional[Float[Tensor, "B 2"]] = None,
        betas: Optional[Float[Tensor, "B 2 K"]] = None,
        mattes: Optional[Float[Tensor, "B 2 h w"]] = None,
    ) -> HandsPrediction:
        """The static-shape part of :meth:`forward` (what ``torch.compile`` compiles): both branches, world frame,
        Gaussians (``crops``: each frame's hand crops in [0, 1], read with ``pixel_colors``; ``feature_maps``:
        the backbone's maps of each frame's window's crops, read with ``pixel_feedback``; ``image_wh``: each
        frame's width and height, read with ``box_fit``; ``betas``: each hand's shape, in place of the
        predicted one; ``mattes``: each crop's matte logits, which gate the Gaussians' opacities)."""
        meshes = [
            branch(tokens, box_norm[:, slot], bbox[:, slot], K, with_embeddings=with_gaussians,
                   feature_maps=None if feature_maps is None else feature_maps[:, slot], image_wh=image_wh,
                   betas=None if betas is None else betas[:, slot])
            for slot, (branch, tokens) in enumerate(zip(self.branches, (left, right)))
        ]
        vertices = [transform_points(c2w, mesh.vertices) for mesh in meshes]
        gaussians = {}
        if with_gaussians:
            parts = []
            for slot, (branch, mesh, v_world) in enumerate(zip(self.branches, meshes, vertices)):
                cue = matte = None
                if crops is not None:
                    cue, matte = branch.crop_cue(mesh.vertices, K, bbox[:, slot], crops[:, slot], None if mattes is None else mattes[:, slot])
                # Computed once for the light and the normal offsets alike.
                normals = None if self.light is None else branch.gaussian_normals(v_world)
                g = branch.gaussians(v_world, mesh.embeddings, mesh.log_gain, cue, normals, matte)
                colors = g.colors if normals is None else g.colors * self.light(normals, c2w)
                parts.append((g.means, g.quats, g.scales, g.opacities * valid[:, slot, None].float(), colors))
            gaussians = {name: torch.cat(p, dim=1) for name, p in zip(GAUSSIAN_FIELDS, zip(*parts))}

        def both(attr: str) -> Tensor:
            return torch.stack([getattr(mesh, attr) for mesh in meshes], dim=1)

        return HandsPrediction(
            vertices=torch.stack(vertices, 1),
            joints=torch.stack([transform_points(c2w, mesh.joints) for mesh in meshes], 1),
            valid=valid,
            betas=both("betas"),
            global_orient=both("global_orient"),
            hand_pose=both("hand_pose"),
            translation=both("translation"),
            **gaussians,
        )
