"""HaMeR-style hand crops: box -> square crop -> backbone input, and crop <-> image points.

The geometry follows HaMeR (``hamer/datasets/vitdet_dataset.py``, ``hamer/datasets/utils.py``,
``hamer/models/hamer.py``):

1. Box ``xyxy`` -> centre and a square side ``size``: the box is scaled by ``rescale`` (HaMeR's
   demo uses 2.0) and grown to the 3:4 (w:h) aspect of the backbone input with
   ``expand_to_aspect_ratio(.., [192, 256])``; HaMeR then takes the larger side, which is
   always the height: ``size = rescale * max(box_h, box_w * 256 / 192)``.
2. The square ``[centre - size/2, centre + size/2]^2`` is resampled to 256 x 256 (bilinear,
   no anti-aliasing, black outside the image), left hands mirrored horizontally about the box
   centre, ImageNet-normalised.
3. The backbone sees the central 256 x 192 (``x[:, :, :, 32:-32]``).

Here steps 2 and 3 are one resampling: an output of ``out_hw = (h, w)`` pixels covers image
height ``size`` and image width ``size * w / h`` around the centre, so ``(256, 192)`` is
HaMeR's input exactly and ``(256, 256)`` is HaMeR's full square crop (the frame its
``pred_cam`` and 2D keypoints live in). Smaller ``out_hw`` such as ``(64, 48)`` is the same
crop at lower resolution.

Coordinates are continuous pixel coordinates with pixel centres at integer + 0.5 (the
package convention) in both the image and the crop, so the box centre lands exactly on the
crop centre. HaMeR's OpenCV warp puts pixel centres on integers instead, which shifts its
crop by half a crop pixel; features do not notice, and
``tests/test_crops.py`` checks the relation against an OpenCV re-creation of HaMeR's warp.
Resampling uses ``grid_sample`` rather than OpenCV so a batch of crops is made on the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, UInt8
from torch import Tensor

from hand4dgs_ns.constants import constant

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HAMER_RESCALE = 2.0
"""Box enlargement of HaMeR's demo (``--rescale_factor``; its dataset class defaults to 2.5)."""
HAMER_BBOX_SHAPE_HW = (256, 192)
"""HaMeR's ``MODEL.BBOX_SHAPE`` (given there as w, h = 192, 256): the aspect boxes grow to."""
HAMER_INPUT_HW = (256, 192)
"""What HaMeR's ViT sees: the central 256 x 192 of a 256 x 256 crop."""


def crop_params(
    bbox_xyxy: Float[Tensor, "*b 4"],
    rescale: float = HAMER_RESCALE,
    aspect_hw: tuple[int, int] = HAMER_BBOX_SHAPE_HW,
) -> tuple[Float[Tensor, "*b 2"], Float[Tensor, "*b"]]:
    """Box corners -> crop centre ``(x, y)`` and square side ``size`` in image pixels.

    ``size`` is the larger side of the ``rescale``-enlarged box after growing it to the
    ``aspect_hw`` aspect, as HaMeR's ``expand_to_aspect_ratio(...).max()``.
    """
    x0, y0, x1, y1 = bbox_xyxy.unbind(-1)
    centre = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2], dim=-1)
    w = rescale * (x1 - x0)
    h = rescale * (y1 - y0)
    ah, aw = aspect_hw
    # Growing to aspect h:w keeps the larger of h and w*ah/aw as height, the other side
    # follows; the square side is the larger of the grown height and width.
    grown_h = torch.maximum(h, w * ah / aw)
    grown_w = grown_h * aw / ah
    return centre, torch.maximum(grown_h, grown_w)


def normalized_box(
    bbox_xyxy: Float[Tensor, "*b 4"], width: int | float, height: int | float
) -> Float[Tensor, "*b 4"]:
    """Box as ``(cx / W, cy / H, w / W, h / H)``: the translation head's extra input.

    Uses the detector's box (not the enlarged crop), so the values are in [0, 1] for boxes
    inside the image.
    """
    x0, y0, x1, y1 = bbox_xyxy.unbind(-1)
    return torch.stack([(x0 + x1) / (2 * width), (y0 + y1) / (2 * height), (x1 - x0) / width, (y1 - y0) / height], -1)


def normalized_frame_boxes(bbox_xyxy: Float[Tensor, "b 2 4"], image_hw: Int[Tensor, "b 2"]) -> Float[Tensor, "b 2 4"]:
    """:func:`normalized_box` of both hands of each frame, with each frame's own image size."""
    return normalized_box(bbox_xyxy, image_hw[:, 1:2].float(), image_hw[:, 0:1].float())


def crop_to_image(
    points_crop: Float[Tensor, "*b k 2"],
    centre: Float[Tensor, "*b 2"],
    size: Float[Tensor, "*b"],
    flip: Bool[Tensor, "*b"],
    out_hw: tuple[int, int] = HAMER_INPUT_HW,
) -> Float[Tensor, "*b k 2"]:
    """Crop pixel coordinates (of an ``out_hw`` crop) -> image pixel coordinates."""
    h, w = out_hw
    scale = (size / h)[..., None]  # image pixels per crop pixel
    sign = 1.0 - 2.0 * flip.to(points_crop.dtype)[..., None]
    x = centre[..., None, 0] + sign * (points_crop[..., 0] - w / 2) * scale
    y = centre[..., None, 1] + (points_crop[..., 1] - h / 2) * scale
    return torch.stack([x, y], dim=-1)


def image_to_crop(
    points_image: Float[Tensor, "*b k 2"],
    centre: Float[Tensor, "*b 2"],
    size: Float[Tensor, "*b"],
    flip: Bool[Tensor, "*b"],
    out_hw: tuple[int, int] = HAMER_INPUT_HW,
) -> Float[Tensor, "*b k 2"]:
    """Image pixel coordinates -> crop pixel coordinates; inverse of :func:`crop_to_image`."""
    h, w = out_hw
    scale = (h / size)[..., None]  # crop pixels per image pixel
    sign = 1.0 - 2.0 * flip.to(points_image.dtype)[..., None]
    u = w / 2 + sign * (points_image[..., 0] - centre[..., None, 0]) * scale
    v = h / 2 + (points_image[..., 1] - centre[..., None, 1]) * scale
    return torch.stack([u, v], dim=-1)


def _pixel_centres(out_hw: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Float[Tensor, "hw 2"]:
    h, w = out_hw
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype) + 0.5,
        torch.arange(w, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1).reshape(h * w, 2)  # row-major, x first


def _as_float_nchw(images: Tensor) -> Float[Tensor, "b 3 H W"]:
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    return images.permute(0, 3, 1, 2)


def crop_hands_per_image(
    images: Float[Tensor, "b H W 3"] | UInt8[Tensor, "b H W 3"],
    centre: Float[Tensor, "b k 2"],
    size: Float[Tensor, "b k"],
    flip: Bool[Tensor, "b k"],
    out_hw: tuple[int, int] = HAMER_INPUT_HW,
    normalize: bool = True,
) -> Float[Tensor, "b k 3 h w"]:
    """``k`` crops from each of ``b`` images in one ``grid_sample`` call (no image copies).

    Images are float in [0, 1] or uint8; the crops are float, ImageNet-normalised unless
    ``normalize`` is False (then in [0, 1]). Pixels outside the image are black (before
    normalisation), as HaMeR's constant border.
    """
    b, k = size.shape
    img_h, img_w = images.shape[1:3]
    h, w = out_hw
    dtype = centre.dtype if centre.is_floating_point() else torch.float32
    pix = _pixel_centres(out_hw, images.device, dtype).expand(b, k, h * w, 2)
    pts = crop_to_image(pix, centre.to(dtype), size.to(dtype), flip, out_hw)
    # grid_sample with align_corners=False maps -1/+1 to the outer image edges, which are
    # continuous coordinates 0 and W (H): exactly the half-pixel-centre convention.
    scale = torch.tensor([2.0 / img_w, 2.0 / img_h], device=images.device, dtype=dtype)
    grid = (pts * scale - 1.0).reshape(b, k * h, w, 2)
    src = _as_float_nchw(images).to(dtype)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.reshape(b, 3, k, h, w).permute(0, 2, 1, 3, 4)
    return normalize_imagenet(out) if normalize else out


def crop_hands(
    images: Float[Tensor, "n H W 3"] | UInt8[Tensor, "n H W 3"],
    centre: Float[Tensor, "n 2"],
    size: Float[Tensor, "n"],
    flip: Bool[Tensor, "n"],
    out_hw: tuple[int, int] = HAMER_INPUT_HW,
    normalize: bool = True,
) -> Float[Tensor, "n 3 h w"]:
    """One crop per image (see :func:`crop_hands_per_image`); left hands pass ``flip=True``."""
    return crop_hands_per_image(images, centre[:, None], size[:, None], flip[:, None], out_hw, normalize)[:, 0]


def sample_crop(
    crops: Float[Tensor, "b c h w"],
    points_image: Float[Tensor, "b g 2"],
    bbox_xyxy: Float[Tensor, "b 4"],
    flip: bool,
) -> Float[Tensor, "b g c"]:
    """The crop's colour (bilinear; black outside the crop) under image points: ``crops`` are those
    :func:`crop_params` cuts from each ``bbox_xyxy`` (default rescale; mirrored when ``flip``), or
    any map aligned with them (a backbone's feature map: its channels, zero outside)."""
    b, _, h, w = crops.shape
    centre, size = crop_params(bbox_xyxy)
    flips = torch.full((b,), flip, dtype=torch.bool, device=crops.device)
    uv = image_to_crop(points_image, centre, size.clamp(min=1.0), flips, (h, w))  # empty boxes: hands without one
    grid = uv * constant((2.0 / w, 2.0 / h), uv.device, uv.dtype) - 1.0  # half-pixel centres, as crop_hands_per_image
    grid = grid.clamp(-2.0, 2.0)  # far-off points (behind the camera, empty boxes) stay off the crop, finite
    return F.grid_sample(crops, grid[:, :, None], mode="bilinear", padding_mode="zeros", align_corners=False)[..., 0].transpose(1, 2)


def normalize_imagenet(crops: Float[Tensor, "*b 3 h w"]) -> Float[Tensor, "*b 3 h w"]:
    """[0, 1] RGB -> ImageNet-normalised (HaMeR's ``IMAGE_MEAN`` / ``IMAGE_STD``)."""
    mean = constant(tuple(IMAGENET_MEAN), crops.device, crops.dtype)[:, None, None]
    std = constant(tuple(IMAGENET_STD), crops.device, crops.dtype)[:, None, None]
    return (crops - mean) / std


def crops_to_uint8(crops01: Float[Tensor, "*b 3 h w"]) -> UInt8[Tensor, "*b 3 h w"]:
    """[0, 1] crops -> uint8 for storage."""
    return (crops01 * 255.0).round().clamp(0, 255).to(torch.uint8)


def uint8_crops_to_input(
    crops: UInt8[Tensor, "*b 3 h w"], dtype: torch.dtype = torch.float32
) -> Float[Tensor, "*b 3 h w"]:
    """Stored uint8 crops -> the normalised float input a backbone expects."""
    return normalize_imagenet(crops.to(dtype) / 255.0)
