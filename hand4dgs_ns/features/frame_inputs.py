"""Every frame's network inputs, kept on the host: backbone crops or tokens, boxes and ego cameras.

The network is feed-forward: any frame of any sequence (a training frame, a held-out one, the
frame under the viewer's time slider) is predicted from that frame's window of backbone inputs
and its ego camera. Those inputs are data, not weights: they travel to the model beside the
dataparser's metadata and never enter a checkpoint. The backbone inputs stay memory-mapped from
the feature cache and only a batch's windows are copied to the device
(:meth:`FrameInputs.network_inputs`), so GPU memory does not grow with the number of videos.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from hand4dgs_ns.features.augment import Augment
from hand4dgs_ns.features.staging import PinnedStager
from hand4dgs_ns.features.windows import window_indices
from hand4dgs_ns.network.hand_network import InputSpec, NetworkInputs

INPUTS_KEY = "hand4dgs_inputs"
"""Key of :class:`FrameInputs` in the datasets' ``metadata`` dict."""


@dataclass(frozen=True)
class FrameInputs:
    """All sequences' frames, concatenated; sequence ``s`` holds rows ``offsets[s] : offsets[s] + lengths[s]``."""

    kind: Literal["crops", "tokens"]
    """``crops``: uint8 hand crops for a backbone trained with the model; ``tokens``: a frozen backbone's float16 tokens."""
    data: tuple[np.ndarray, ...]
    """Per sequence, (F, 2, 3, h, w) uint8 crops or (F, 2, tokens, channels) float16 tokens, usually
    read-only memory maps of the feature cache; slot 0 left, 1 right."""
    bbox: Float[Tensor, "T 2 4"]
    """Hand boxes, xyxy pixels of the ego frame."""
    valid: Bool[Tensor, "T 2"]
    """Hand present and usable."""
    K: Float[Tensor, "T 3 3"]
    """Ego camera intrinsics."""
    c2w: Float[Tensor, "T 4 4"]
    """Ego camera-to-world, OpenCV axes."""
    image_hw: Int[Tensor, "S 2"]
    """Ego frame height and width per sequence."""
    offsets: Int[Tensor, "S"]
    """First row of each sequence."""
    lengths: Int[Tensor, "S"]
    """Frames per sequence."""
    estimates: Optional[Float[Tensor, "T 2 E"]] = None
    """Each frame's encoded per-frame hand estimates (:mod:`hand4dgs_ns.features.estimates`), or None."""
    color_crops: Optional[tuple[np.ndarray, ...]] = None
    """Per sequence, (F, 2, 3, H, W) uint8 crops cut like ``data``'s but larger, read for the
    Gaussians' colours (``pixel_colors``) and the hand matte (``matte``); None: both read ``data``'s crops."""

    def __deepcopy__(self, memo: dict[int, Any]) -> FrameInputs:
        # nerfstudio deep-copies dataset metadata; these read-only arrays are shared instead.
        return self

    @property
    def spec(self) -> InputSpec:
        """What one hand's backbone input is (the network is built for it)."""
        return InputSpec(kind=self.kind, shape=tuple(int(n) for n in self.data[0].shape[2:]))

    @property
    def nbytes(self) -> int:
        """Size of the backbone inputs of every frame (on disk or in the page cache, not on the device)."""
        return sum(int(d.nbytes) for d in self.data)

    def frame_batches(self, sequence: int, batch_frames: int) -> Iterator[Int[Tensor, "n"]]:
        """Consecutive frame indices of one sequence, ``batch_frames`` at a time."""
        n = int(self.lengths[sequence])
        for start in range(0, n, batch_frames):
            yield torch.arange(start, min(start + batch_frames, n))

    def rows(self, sequence: Int[Tensor, "b"], frame: Int[Tensor, "b"]) -> Int[Tensor, "b"]:
        """Flat row of each (sequence, frame), frames clamped into their sequence."""
        length = self.lengths[sequence]
        return self.offsets[sequence] + torch.minimum(frame.clamp(min=0), length - 1)

    def window_rows(self, sequence: Int[Tensor, "b"], frame: Int[Tensor, "b"], half_width: int) -> Int[Tensor, "b w"]:
        """Flat rows of each frame's temporal window, edge-replicated at the sequence's ends."""
        return self.offsets[sequence, None] + window_indices(frame, self.lengths[sequence], half_width)

    def sequence_of(self, rows: Int[Tensor, "n"]) -> Int[Tensor, "n"]:
        """The sequence each flat row belongs to."""
        return torch.searchsorted(self.offsets, rows, right=True) - 1

    def gather(self, rows: Int[Tensor, "n"], arrays: Optional[tuple[np.ndarray, ...]] = None) -> np.ndarray:
        """Backbone inputs (or another per-sequence ``arrays``) of flat ``rows``: a host array, read from the memory maps."""
        arrays = self.data if arrays is None else arrays
        rows_np = rows.numpy()
        sequence = self.sequence_of(rows).numpy()
        first = arrays[0]
        out = np.empty((len(rows_np), *first.shape[1:]), dtype=first.dtype)
        for s in np.unique(sequence):
            pick = sequence == s
            out[pick] = arrays[s][rows_np[pick] - int(self.offsets[s])]
        return out

    def network_inputs(
        self,
        sequence: Int[Tensor, "b"],
        frame: Int[Tensor, "b"],
        half_width: int,
        stager: PinnedStager,
        distinct: bool = True,
        augment: Augment | None = None,
        with_estimates: bool = False,
        with_color_crops: bool = True,
    ) -> NetworkInputs:
        """The network's inputs for frames ``(sequence, frame)`` (host indices), on ``stager``'s device.

        With ``distinct`` each frame that several windows share is sent once (neighbouring
        frames share most of their windows); without it every window row is sent, so the
        shapes depend on the batch size alone (what CUDA graphs need). ``augment`` (crops only)
        jitters the crops' colours and the hands' boxes per video on the host, before they are sent.
        ``with_estimates`` also sends the frames' encoded estimates (for a network that reads them);
        ``with_color_crops`` the colour crops, where there are any (the Gaussians' colours and the matte read them).
        """
        sequence, frame = sequence.cpu().long(), frame.cpu().long()
        window = self.window_rows(sequence, frame, half_width)
        if distinct:
            unique, local = torch.unique(window, return_inverse=True)
        else:
            unique, local = window.reshape(-1), torch.arange(window.numel()).reshape(window.shape)
        rows = self.rows(sequence, frame)
        frames = self.gather(unique)
        bbox = self.bbox[rows]
        if augment is not None and self.kind == "crops":
            crops, crop_video = torch.from_numpy(frames), self.sequence_of(unique)
            if augment.colour is not None:
                crops = augment.colour(crops, crop_video, augment.generator)
            if augment.box is not None:
                crops, bbox = augment.box(crops, crop_video, bbox, sequence, augment.generator)
            frames = crops.numpy()
        return NetworkInputs(
            frames=stager.to_device(frames),
            window=stager.to_device(local),
            bbox=stager.to_device(bbox),
            valid=stager.to_device(self.valid[rows]),
            K=stager.to_device(self.K[rows]),
            c2w=stager.to_device(self.c2w[rows]),
            image_hw=stager.to_device(self.image_hw[sequence]),
            estimates=stager.to_device(self.estimates[unique]) if with_estimates and self.estimates is not None else None,
            color_crops=stager.to_device(self.gather(rows, self.color_crops)) if with_color_crops and self.color_crops is not None else None,
        )
