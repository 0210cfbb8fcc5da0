"""One hand's branch of Hand-4DGS: window tokens -> hand mesh -> mesh-guided Gaussians.

The paper keeps separate temporal convolutions and MLPs for the left and the right hand; the
model holds one :class:`HandBranch` per side (with ``mirrored_pose`` the left one borrows the right
one's pose path: :meth:`HandBranch.share_pose_path`). Everything here is in the frame's camera frame
(OpenCV axes, metres) until :meth:`HandBranch.gaussians` receives world-frame vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from hand4dgs_ns.constants import constant
from hand4dgs_ns.data.sequence_format import HAND_SIDES
from hand4dgs_ns.features.crops import sample_crop
from hand4dgs_ns.gaussians import (
    MeshGaussianLayout,
    gaussian_means,
    gaussian_quats,
    interpolate_vertex_attributes,
    make_layout,
    vertex_normals,
)
from hand4dgs_ns.geometry.cameras import box_prior, centre_on_box, project_points
from hand4dgs_ns.geometry.mirror import CROPS_MIRRORED, mirror_boxes, mirror_normalized_boxes, mirror_points, mirror_rotations
from hand4dgs_ns.geometry.rotations import matrix_to_rotation_6d, rotation_6d_to_matrix
from hand4dgs_ns.hands.lbs import HandLayer, HandOutput, hand_forward
from hand4dgs_ns.hands.template import HandTemplate
from hand4dgs_ns.network.config import HandNetworkConfig
from hand4dgs_ns.network.layers import TemporalConv, mlp

_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CROP_CUE_DIM = 4
"""Per-Gaussian crop cue of ``pixel_colors``: RGB under the Gaussian and the cosine of its facing."""
FEEDBACK_DIM = 8
"""Channels of the feature map kept at each projected joint (``pixel_feedback``), as PyMAF's 5."""
_MAX_LOG_GAIN = 0.7  # gains 0.5-2: a camera's auto-exposure range, and room for a shaded or lit hand


@dataclass(frozen=True)
class HandMesh:
    """A batch of predicted hands in the camera frame."""

    vertices: Float[Tensor, "b v 3"]
    joints: Float[Tensor, "b 21 3"]
    embeddings: Optional[Float[Tensor, "b g d"]]
    """Per-Gaussian embeddings (interpolated from vertex embeddings unless ablated); None when not asked for."""
    betas: Float[Tensor, "b k"]
    """Shape coefficients of the template."""
    global_orient: Float[Tensor, "b 3 3"]
    """Wrist rotation, camera frame."""
    hand_pose: Float[Tensor, "b j 3 3"]
    """Rotations of the non-root joints relative to their parents (template order; 15 for MANO)."""
    translation: Float[Tensor, "b 3"]
    """The template's translation argument, camera frame (metres)."""
    log_gain: Optional[Float[Tensor, "b 3"]]
    """Log RGB gain on the hand's colours in this frame; None without ``color_gain``."""


@dataclass(frozen=True)
class HandGaussians:
    """World-frame Gaussians of a batch of hands (quaternions wxyz, scales in metres)."""

    means: Float[Tensor, "b g 3"]
    quats: Float[Tensor, "b g 4"]
    scales: Float[Tensor, "b g 3"]
    opacities: Float[Tensor, "b g"]
    colors: Float[Tensor, "b g 3"]


class HandBranch(nn.Module):
    """TC layer, MANO-style heads, vertex embeddings and the Gaussian decoders for one hand."""

    def __init__(self, template: HandTemplate, num_tokens: int, token_dim: int, sizes: HandNetworkConfig, map_channels: int = 0):
        super().__init__()
        self.sizes = sizes
        self.hand = HandLayer(template)  # template tensors as buffers: they follow .to(device)
        layout = make_layout(template.faces, template.num_vertices, per_face=sizes.gaussians_per_face, seed=sizes.seed)
        self.num_gaussians = int(layout.face_ids.shape[0])
        # Fixed per model: buffers (persistent so a checkpoint renders exactly what was trained).
        self.register_buffer("face_ids", layout.face_ids)
        self.register_buffer("barycentrics", layout.barycentrics)
        self.register_buffer("rest_centre", template.v_template.float().mean(dim=0), persistent=False)

        feat = num_tokens * sizes.tc_dim
        self.tc = TemporalConv(token_dim, sizes.tc_dim, sizes.window)
        self.shape_head = mlp(feat, sizes.head_width, template.num_betas, sizes.head_layers)
        self.pose_head = mlp(feat, sizes.head_width, template.num_joints * 6, sizes.head_layers)
        self.transl_head = mlp(feat + 4, sizes.head_width, 3, sizes.head_layers)
        # Pixel-aligned feedback: the feature maps under each projected joint, reduced to a few
        # channels and convolved over the window as the tokens are, and a zero-initialised head
        # that corrects the pose and translation outputs.
        self.point_reduce: Optional[nn.Module] = None
        self.point_tc: Optional[nn.Module] = None
        self.refine_head: Optional[nn.Module] = None
        if sizes.pixel_feedback and map_channels > 0:
            self.point_reduce = nn.Conv2d(map_channels, FEEDBACK_DIM, 1)
            self.point_tc = TemporalConv(FEEDBACK_DIM, FEEDBACK_DIM, sizes.window)
            refine_in = feat + int(template.openpose_map.shape[0]) * FEEDBACK_DIM + template.num_joints * 6 + 3
            self.refine_head = mlp(refine_in, sizes.head_width, template.num_joints * 6 + 3, 3)
        embed_count = self.num_gaussians if sizes.per_gaussian_embeddings else template.num_vertices
        # "A 1-layer MLP gives a per-vertex embedding": one linear map, factorised through a
        # low rank so its V*D outputs do not need a (features x V*D) weight.
        self.embed = nn.Sequential(nn.Linear(feat, sizes.embed_rank), nn.Linear(sizes.embed_rank, embed_count * sizes.embed_dim))
        # With pixel colours the decoder also reads the crop cue (colour under the Gaussian, facing).
        self.color_mlp = mlp(sizes.embed_dim + (CROP_CUE_DIM if sizes.pixel_colors else 0), sizes.appearance_width, 3, 2)
        self.scale_mlp = mlp(sizes.embed_dim, sizes.appearance_width, 3, 2)
        self.offset_mlp = mlp(sizes.embed_dim, sizes.appearance_width, 1, 2) if sizes.normal_offset_mm > 0 else None
        # Zero-initialised last layer (as every head): gain 1 until the image loss trains it.
        self.gain_head = mlp(feat, sizes.appearance_width, 3, 2) if sizes.color_gain else None
        self.mirrored = False
        """Set by :meth:`share_pose_path`: the pose path is another hand's, seen through the mirror."""
        self.log_scale_base = nn.Parameter(_initial_log_scales(template, layout))
        self.opacity_logit = nn.Parameter(torch.full((self.num_gaussians,), 3.0))

    def initialise_orientation(self, rotation: Float[Tensor, "3 3"]) -> None:
        """Starts the global-orientation output at ``rotation`` (camera frame) instead of identity.

        Only the last layer's bias changes (its weights stay zero), like HaMeR starting its
        regressor from mean parameters: training begins from the data's typical orientation.
        """
        last = self.pose_head[-1]
        prior = matrix_to_rotation_6d(rotation.to(last.bias)) - last.bias.new_tensor(_IDENTITY_6D)
        with torch.no_grad():
            last.bias[:6] = prior

    def initialise_color(self, rgb: Float[Tensor, "3"]) -> None:
        """Starts the colour decoder at ``rgb`` (0 to 1) instead of grey, as :meth:`initialise_orientation`
        starts the orientation: only the last layer's bias changes. The decoder's learning rate moves
        that bias by about the rate a step, too slowly to reach a dark skin from grey within a short
        image phase. With pixel colours the decoder corrects the crop's colour and keeps starting at zero."""
        if self.sizes.pixel_colors:
            return
        last = self.color_mlp[-1]
        with torch.no_grad():
            last.bias.copy_(torch.logit(rgb.to(last.bias).clamp(0.02, 0.98)))

    def share_pose_path(self, other: HandBranch) -> None:
        """Takes ``other``'s temporal convolution and shape, pose and translation heads (the same
        modules, trained by both hands) and reads them in the mirror: this hand's crops are mirrored
        (left hands are), so its pose path sees ``other``'s side of hand, in the mirrored camera, and
        its prediction is mirrored back (:mod:`hand4dgs_ns.geometry.mirror`). Exact for templates
        whose two sides are mirror images (the open hand); MANO's are so up to its shape basis."""
        self.tc, self.shape_head, self.pose_head, self.transl_head = other.tc, other.shape_head, other.pose_head, other.transl_head
        self.point_reduce, self.point_tc, self.refine_head = other.point_reduce, other.point_tc, other.refine_head
        self.mirrored = True

    def pose_modules(self) -> tuple[nn.Module, ...]:
        """The layers between the tokens and the hand mesh (the pose path)."""
        heads = (self.point_reduce, self.point_tc, self.refine_head)
        return (self.tc, self.shape_head, self.pose_head, self.transl_head) + tuple(m for m in heads if m is not None)

    def appearance_parameters(self) -> list[nn.Parameter]:
        """What decides how the mesh looks once posed: embeddings, colour, gain, scale and offset decoders, base scales, opacities."""
        modules = [m for m in (self.embed, self.color_mlp, self.gain_head, self.scale_mlp, self.offset_mlp) if m is not None]
        return [p for m in modules for p in m.parameters()] + [self.log_scale_base, self.opacity_logit]

    @property
    def crops_mirrored(self) -> bool:
        """Whether this hand's crops (and feature maps) are cut mirrored: a left hand's always are
        (:mod:`hand4dgs_ns.features.crops`), whether or not its pose path is shared."""
        return CROPS_MIRRORED[HAND_SIDES.index(self.hand.template.side)]

    @property
    def layout(self) -> MeshGaussianLayout:
        return MeshGaussianLayout(face_ids=self.face_ids, barycentrics=self.barycentrics)

    def forward(
        self,
        tokens: Float[Tensor, "b window n c"],
        box_norm: Float[Tensor, "b 4"],
        box_xyxy: Float[Tensor, "b 4"],
        K: Float[Tensor, "b 3 3"],
        with_embeddings: bool = True,
        feature_maps: Optional[Float[Tensor, "b window m h w"]] = None,
        image_wh: Optional[Float[Tensor, "b 2"]] = None,
        betas: Optional[Float[Tensor, "b k"]] = None,
    ) -> HandMesh:
        """Predicts the hand mesh in the camera frame from a window of backbone tokens (and, with
        ``with_embeddings``, the per-Gaussian embeddings the Gaussians are decoded from). With
        ``pixel_feedback``, ``feature_maps`` are the backbone's maps of the window's crops (mirrored for
        a left hand, as every left crop is), read to correct the first prediction. With
        ``box_fit``, ``image_wh`` is the frame's size, to which the boxes are clipped. ``betas``, when
        given, is the hand's shape (this side's, real scene) in place of the shape head's."""
        b = tokens.shape[0]
        box_image = box_xyxy
        if self.mirrored:  # the pose path sees the mirrored scene, as in the (mirrored) crops
            box_norm, box_xyxy = mirror_normalized_boxes(box_norm), mirror_boxes(box_xyxy, K[:, 0, 2])
        feat = self.tc(tokens).reshape(b, -1)
        template = self.hand.template
        if betas is None:
            betas = self.shape_head(feat)
        d6 = self.pose_head(feat).reshape(b, -1) + constant(_IDENTITY_6D * template.num_joints, feat.device, feat.dtype)
        residual = self.transl_head(torch.cat([feat, box_norm], dim=-1))
        rot, translation, out = self._posed(d6, residual, betas, box_xyxy, K)
        if self.refine_head is not None and feature_maps is not None:
            # Where the first prediction's joints land in the centre frame's crop, and what each
            # window frame's crop holds there (boxes follow the hand, so a joint keeps its place in
            # the crop over a few frames); the positions are detached: the head learns to read
            # them, not to move them.
            w = feature_maps.shape[1]
            joints_image = project_points(K, out.joints.detach()).repeat_interleave(w, dim=0)
            reduced = self.point_reduce(feature_maps.flatten(0, 1))
            points = sample_crop(reduced, joints_image, box_image.repeat_interleave(w, dim=0), flip=self.crops_mirrored)
            points = self.point_tc(points.reshape(b, w, *points.shape[1:]))
            delta = self.refine_head(torch.cat([feat, points.flatten(1), d6, residual], dim=-1))
            d6, residual = d6 + delta[:, :-3], residual + delta[:, -3:]
            rot, translation, out = self._posed(d6, residual, betas, box_xyxy, K)
        if self.sizes.box_fit:
            if image_wh is None:
                raise ValueError("box_fit centres each hand on its box within the image: pass image_wh")
            # In the real scene, where the box is; differentiable, so a loss on the centred hand
            # trains the pose knowing the hand will be centred (a detached shift would teach the
            # heads to move a hand that the centring then puts back).
            shift = centre_on_box(out.vertices, box_image, K, image_wh)
            translation = translation + shift
            out = HandOutput(vertices=out.vertices + shift[:, None], joints=out.joints + shift[:, None])
        emb = None
        if with_embeddings:  # the pose-only passes (vertex phase, neighbour frames) skip them
            emb = self.embed(feat).reshape(b, -1, self.sizes.embed_dim)
            if not self.sizes.per_gaussian_embeddings:
                emb = interpolate_vertex_attributes(emb, template.faces, self.layout)
        log_gain = _MAX_LOG_GAIN * torch.tanh(self.gain_head(feat)) if self.gain_head is not None else None
        return HandMesh(
            vertices=out.vertices, joints=out.joints, embeddings=emb,
            betas=betas, global_orient=rot[:, 0], hand_pose=rot[:, 1:], translation=translation, log_gain=log_gain,
        )

    def _posed(
        self, d6: Float[Tensor, "b j6"], residual: Float[Tensor, "b 3"], betas: Float[Tensor, "b k"],
        box_xyxy: Float[Tensor, "b 4"], K: Float[Tensor, "b 3 3"],
    ) -> tuple[Float[Tensor, "b j 3 3"], Float[Tensor, "b 3"], HandOutput]:
        """The pose path's outputs (in its own, possibly mirrored, scene) -> this side's rotations,
        template translation and skinned hand, camera frame."""
        rot = rotation_6d_to_matrix(d6.reshape(d6.shape[0], -1, 6))
        box_point = box_translation(residual, box_xyxy, K, self.sizes.hand_extent_m)
        if self.mirrored:  # back to the real scene: this side's template parameters
            rot, box_point = mirror_rotations(rot), mirror_points(box_point)
        # The box prior locates the hand's centre; the template is skinned about its wrist.
        translation = box_point - rot[:, 0] @ self.rest_centre
        return rot, translation, hand_forward(self.hand.template, rot[:, 0], rot[:, 1:], betas, translation)

    def crop_cue(
        self, vertices_cam: Float[Tensor, "b v 3"], K: Float[Tensor, "b 3 3"], box_xyxy: Float[Tensor, "b 4"],
        crops: Float[Tensor, "b 3 h w"], matte_logits: Optional[Float[Tensor, "b h w"]] = None,
    ) -> tuple[Float[Tensor, "b g 4"], Optional[Float[Tensor, "b g"]]]:
        """What the frame shows where each Gaussian lands (``pixel_colors``): the crop's RGB under
        its projected centre and the cosine between its normal and the direction to the camera
        (positive: facing it; a Gaussian facing away sees the surface in front of it). The geometry
        is detached: the image loss moves the hand by where it draws it, not by what it samples.

        With ``matte_logits`` (the :class:`~hand4dgs_ns.network.matte.HandMatte` of the same crop),
        also how surely the frame shows a hand there, 0 to 1: the logits are read with the colours
        (bilinear in logits, then the sigmoid, so the outline stays sharp); beyond the crop (twice
        the hand box) they read 0, one half. Both are read at the centre on the mesh, before any
        normal offset. The matte is not detached, so the image losses train it beside its own loss;
        else None."""
        vertices = vertices_cam.detach()
        means = gaussian_means(vertices, self.hand.faces, self.layout)
        maps = crops if matte_logits is None else torch.cat([crops, matte_logits[:, None]], dim=1)
        read = sample_crop(maps, project_points(K, means), box_xyxy, self.crops_mirrored)
        facing = -(self.gaussian_normals(vertices) * F.normalize(means, dim=-1)).sum(dim=-1, keepdim=True)
        matte = None if matte_logits is None else torch.sigmoid(read[..., 3])
        return torch.cat([read[..., :3], facing], dim=-1), matte

    def gaussians(
        self,
        vertices_world: Float[Tensor, "b v 3"],
        embeddings: Float[Tensor, "b g d"],
        log_gain: Optional[Float[Tensor, "b 3"]],
        crop_cue: Optional[Float[Tensor, "b g 4"]] = None,
        normals: Optional[Float[Tensor, "b g 3"]] = None,
        matte: Optional[Float[Tensor, "b g"]] = None,
    ) -> HandGaussians:
        """Mesh-guided Gaussians on world-frame vertices (paper, section 3.2), colours times the frame's
        gain if any; with a :meth:`crop_cue`, colours are the crop's corrected by the colour decoder.
        ``normals``: the :meth:`gaussian_normals` of these vertices when the caller has them already;
        ``matte``: each Gaussian's reading of the matte (:meth:`crop_cue`), which scales its opacity."""
        layout = self.layout
        faces = self.hand.faces
        log_scales = self.log_scale_base + torch.tanh(self.scale_mlp(embeddings))
        opac = torch.sigmoid(self.opacity_logit).expand(vertices_world.shape[0], -1)
        if matte is not None:
            opac = opac * matte
        if crop_cue is None:
            colors = torch.sigmoid(self.color_mlp(embeddings))
        else:  # zero-initialised decoder: the crop's colours until the image loss teaches corrections
            base = torch.logit(crop_cue[..., :3].clamp(0.02, 0.98))
            colors = torch.sigmoid(base + self.color_mlp(torch.cat([embeddings, crop_cue], dim=-1)))
        means = gaussian_means(vertices_world, faces, layout)
        if self.offset_mlp is not None:  # along the normal, within +-normal_offset_mm
            offset = 1e-3 * self.sizes.normal_offset_mm * torch.tanh(self.offset_mlp(embeddings))
            means = means + offset * (self.gaussian_normals(vertices_world) if normals is None else normals)
        return HandGaussians(
            means=means,
            quats=gaussian_quats(vertices_world, faces, layout),
            scales=log_scales.exp(),
            opacities=opac,
            colors=colors if log_gain is None else colors * log_gain.exp()[:, None],
        )

    def gaussian_normals(self, vertices_world: Float[Tensor, "b v 3"]) -> Float[Tensor, "b g 3"]:
        """Unit surface normals at the Gaussians: vertex normals interpolated as the embeddings are (smooth shading)."""
        faces = self.hand.faces
        normals = interpolate_vertex_attributes(vertex_normals(vertices_world, faces), faces, self.layout)
        return F.normalize(normals, dim=-1)


def box_translation(
    residual: Float[Tensor, "b 3"], box_xyxy: Float[Tensor, "b 4"], K: Float[Tensor, "b 3 3"], hand_extent_m: float
) -> Float[Tensor, "b 3"]:
    """The hand's centre (camera frame) from a residual on a box-based prior.

    The prior back-projects the box centre at the depth where a hand of ``hand_extent_m``
    would fill the box; the head predicts ``(dx, dy)`` in units of depth and a log-depth
    factor, so a zero residual (the zero-initialised head) already places the hand in the box.
    """
    ray, prior_depth = box_prior(box_xyxy, K, hand_extent_m)
    depth = prior_depth * torch.exp(residual[:, 2])
    xy = (ray + residual[:, :2]) * depth[:, None]
    return torch.cat([xy, depth[:, None]], dim=-1)


def _initial_log_scales(template: HandTemplate, layout: MeshGaussianLayout) -> Tensor:
    """Base scales from the rest mesh: Gaussians of a face share its area; thin along the normal."""
    v = template.v_template.float()
    f = template.faces
    area = 0.5 * torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1).norm(dim=-1)
    per_face = max(int(layout.face_ids.shape[0]) - template.num_vertices, 0) / max(f.shape[0], 1) + 1.0
    radius = torch.sqrt(area[layout.face_ids] / (math.pi * per_face)).clamp(min=1e-4)
    return torch.stack([radius.log(), radius.log(), (0.3 * radius).log()], dim=-1)
