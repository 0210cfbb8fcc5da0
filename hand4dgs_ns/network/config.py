"""The one definition of the Hand-4DGS network's options (templates and sizes).

The nerfstudio model's config inherits these fields, so they are set on the command line as
``--pipeline.model.window`` and so on, and the network reads them from any config that has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones.small_cnn import DEFAULT_CHANNELS, GROUPS


@dataclass
class HandNetworkConfig:
    """Templates and sizes of the Hand-4DGS network (defaults from the paper where it gives values)."""

    template: Literal["open", "mano"] = "open"
    """Hand template: 'open' (shipped, no licence needed) or 'mano' (needs --pipeline.model.mano-dir)."""
    mano_dir: Optional[Path] = None
    """Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (from the MANO website, after registration);
    default: the folder in the environment variable HAND4DGS_MANO_DIR."""
    window: int = 5
    """Frames in the temporal window (2k+1, odd). 1 is the paper's 'no TC' ablation."""
    context_gradient: bool = True
    """Train the crop backbone through every frame of each window. False encodes a window's
    neighbour frames without gradient: only the predicted (centre) frames' crops train the
    backbone, each frame in its turn, and the temporal convolution still trains on all of them.
    With a 5-frame window this cuts the backbone's backward pass five times, which a CPU notices
    (the backbone is most of a step there); values are unchanged, only the gradient differs. A CPU
    setting: steps with it off are not recorded as CUDA graphs (the split's sizes change from step
    to step), and on a GPU finding the split waits for the device."""
    cnn_channels: tuple[int, ...] = DEFAULT_CHANNELS
    """Widths of the small CNN's last four stride-2 stages (the backbone trained with the network,
    on crops); the last is the token width. Larger crops (``--pipeline.datamanager.crop-size 128
    96``) add stages in front at the first width. A network reading a frozen backbone's cached
    tokens (hamer-vit-h) has no CNN and ignores it."""
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
    normal_offset_mm: float = 0.0
    """Largest offset of a Gaussian along the surface normal (millimetres), decoded from its
    embedding by a zero-initialised MLP: detail the template's shape space lacks, such as thinner
    fingers or a hand's outline drawn inside its antialiased edge. 0: Gaussians stay on the mesh."""
    per_gaussian_embeddings: bool = False
    """Ablation: predict every Gaussian's embedding directly instead of interpolating vertex embeddings."""
    color_gain: bool = False
    """Multiply each hand's colours in a frame by an RGB gain predicted from that frame's features
    (log-gain within +-0.7), so the colours can follow a camera's auto-exposure and the light on
    each hand. Built from the frame's own input, it exists for unseen frames too."""
    shading: bool = False
    """Colours as albedo times diffuse light: a learned spherical-harmonic light fixed in the world
    and one moving with the camera, evaluated at each Gaussian's normal, so the shading of a
    turning hand follows its pose instead of being predicted into the colours."""
    pixel_colors: bool = False
    """Each Gaussian's colour starts from the frame: the colour of the (centre frame's) hand crop
    where the Gaussian projects, corrected by the colour decoder, which also reads the Gaussian's
    embedding and how its surface faces the camera. Colours then follow a new subject's skin, the
    room's light and the camera's exposure without being learnt. Crop inputs only (the small CNN
    trained with the network): a network reading cached tokens (hamer-vit-h) has no crops, and its
    colours come from the embeddings alone whatever this says."""
    matte: bool = False
    """With ``pixel_colors``: a small convolutional net reads each hand's colour crop and says where the
    frame shows a hand (:mod:`hand4dgs_ns.network.matte`), trained against the training masks; each
    Gaussian's opacity is scaled by it under the Gaussian, so a mesh drawn a pixel or two beyond the
    frame's hand does not paint the room there. Prediction still needs frames, cameras and boxes only."""
    mirrored_pose: bool = False
    """One pose path for both hands, as HaMeR predicts every hand as a right hand: the left hand's
    (mirrored) crops go through the right branch's temporal convolution and shape, pose and
    translation heads, and its mesh is mirrored back. The pose weights see twice the hands; each
    hand keeps its own appearance decoders."""
    estimate_input: bool = False
    """Also read each frame's per-frame hand estimate (the clip's pseudo-labels: HaMeR's output on
    real video) as one more token per hand (hand4dgs_ns/features/estimates.py), as the paper's
    network reads HaMeR's tokens, which carry HaMeR's own estimate. Prediction then needs the
    clip's pseudo_joints (format v1 always has them). Off: frames, cameras and boxes only."""
    pixel_feedback: bool = False
    """Pixel-aligned feedback (as PyMAF): after the first prediction, the hand's 21 joints are
    projected into the centre frame's crop, each window frame's backbone feature map (four times
    finer than its tokens) is read there and the readings convolved over the window, and a
    zero-initialised head corrects the pose and translation from them, so the hand is placed by
    what lies under it rather than by the pooled tokens alone. Crop inputs only (the small CNN
    trained with the network), as ``pixel_colors``. Measured: finger pose better, crop PSNR lower
    (docs/benchmarks.md)."""
    box_fit: bool = False
    """Centre each predicted hand on its box: after the pose is predicted, move the hand across the
    view (:func:`~hand4dgs_ns.geometry.cameras.centre_on_box`) so that the box around its projected
    mesh is centred on the frame's hand box. The box, cut around the frame's own hand, says to a
    pixel where the hand is drawn, which the pooled tokens of an unseen hand's crop do not. Meant
    for boxes that follow the hand's outline with the same margin on each side (format v1's
    synthetic, H2O and ARCTIC boxes). Depth and pose stay the network's."""
    video_shape: bool = False
    """At prediction, give each hand one shape for the whole video: the mean of the network's
    per-frame shape coefficients over the frames where the hand is present
    (:func:`~hand4dgs_ns.network.video_shape.video_shape`, a pose-only pass over the video first), as
    one person's hand keeps its shape from frame to frame while a single frame's crop says little
    about it. Training still predicts each frame's shape (the steps see a few frames per video).
    An existing run takes it with ``video_shape: true`` in a copy of its config.yml. Between training
    steps every evaluation or viewer render redoes that pass for its video, as the weights change."""
    hand_extent_m: float = 0.18
    """Typical extent of a hand (metres): the translation prior puts a hand of this size in its box."""
    seed: int = 0
    """Seed of the fixed Gaussian placements."""

    def check(self) -> None:
        """Refuses sizes the network cannot be built with."""
        if self.matte and not self.pixel_colors:
            raise Hand4DGSError(
                "--pipeline.model.matte gates the Gaussians that --pipeline.model.pixel-colors colours from the crops: "
                "pass --pipeline.model.pixel-colors True as well (hand4dgs-generalized sets it), or leave the matte off."
            )
        if self.window < 1 or self.window % 2 == 0:
            raise Hand4DGSError(f"--pipeline.model.window {self.window}: give a positive odd number of frames (5, 9, ...).")
        if len(self.cnn_channels) != 4 or any(c <= 0 or c % GROUPS for c in self.cnn_channels):
            raise Hand4DGSError(
                f"--pipeline.model.cnn-channels {' '.join(map(str, self.cnn_channels))}: give four widths, "
                f"each a positive multiple of {GROUPS} (default {' '.join(map(str, DEFAULT_CHANNELS))})."
            )
