"""HaMeR-style hand crops: box geometry, resampling, mirroring, crop <-> image coordinates."""

import cv2
import numpy as np
import pytest
import torch

from hand4dgs_ns.features.crops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_hands,
    crop_hands_per_image,
    crop_params,
    crop_to_image,
    crops_to_uint8,
    image_to_crop,
    normalized_box,
    uint8_crops_to_input,
)


def _hamer_expand_to_aspect_ratio(w, h, w_t=192, h_t=256):
    """HaMeR's ``expand_to_aspect_ratio`` (hamer/datasets/utils.py), branch for branch."""
    if h / w < h_t / w_t:
        return np.array([w, max(w * h_t / w_t, h)])
    return np.array([max(h * w_t / h_t, w), h])


def _hamer_patch(img, cx, cy, box_size, flip, patch=256):
    """HaMeR's ``generate_image_patch_cv2`` with no augmentation (OpenCV pixel centres on integers)."""
    if flip:
        cx = img.shape[1] - cx - 1
        img = np.ascontiguousarray(img[:, ::-1])
    half = box_size / 2
    src = np.float32([[cx, cy], [cx, cy + half], [cx + half, cy]])
    dst = np.float32([[patch / 2, patch / 2], [patch / 2, patch], [patch, patch / 2]])
    trans = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(img, trans, (patch, patch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2.0).clip(0, 1)


def test_crop_params_follow_hamer_box_expansion():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 30.0, 90.0], [5.0, 5.0, 35.0, 45.0]])
    centre, size = crop_params(boxes, rescale=2.0)
    for box, c, s in zip(boxes.numpy(), centre.numpy(), size.numpy()):
        w, h = 2.0 * (box[2:] - box[:2])
        assert s == pytest.approx(_hamer_expand_to_aspect_ratio(w, h).max())
        np.testing.assert_allclose(c, (box[:2] + box[2:]) / 2)
    # A wide box (40 x 20) grows to width 80 -> height 80 * 4/3; a tall one keeps its height.
    assert size[0].item() == pytest.approx(80 * 256 / 192)
    assert size[1].item() == pytest.approx(180.0)


def test_normalized_box():
    out = normalized_box(torch.tensor([[100.0, 50.0, 300.0, 150.0]]), width=400, height=200)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5, 0.5, 0.5]]))


@pytest.mark.parametrize("flip", [False, True])
def test_a_dot_lands_where_expected(flip):
    image = torch.zeros(1, 100, 120, 3)
    image[0, 40, 70] = 1.0  # pixel (row 40, col 70): centre at x = 70.5, y = 40.5
    centre = torch.tensor([[60.0, 50.0]])  # a pixel corner, as is the centre of an even-sized crop
    size = torch.tensor([64.0])  # 64 image pixels -> 64 crop rows: one crop pixel per image pixel
    crop = crop_hands(image, centre, size, torch.tensor([flip]), out_hw=(64, 48), normalize=False)
    assert crop.shape == (1, 3, 64, 48)
    row, col = divmod(int(crop[0, 0].argmax()), 48)
    # 10.5 px right of and 9.5 px above the centre; mirrored, 10.5 px left of it.
    assert (row, col) == (22, 13 if flip else 34)
    assert crop[0, :, row, col].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert crop.sum().item() == pytest.approx(3.0, abs=1e-4)
    predicted = image_to_crop(torch.tensor([[[70.5, 40.5]]]), centre, size, torch.tensor([flip]), out_hw=(64, 48))
    torch.testing.assert_close(predicted, torch.tensor([[[col + 0.5, row + 0.5]]]))


def test_mirroring_flips_the_crop_horizontally():
    image = torch.from_numpy(_smooth_image(96, 128))[None]
    centre, size = torch.tensor([[60.3, 47.1]]), torch.tensor([70.0])
    plain = crop_hands(image, centre, size, torch.tensor([False]), out_hw=(32, 24))
    mirrored = crop_hands(image, centre, size, torch.tensor([True]), out_hw=(32, 24))
    torch.testing.assert_close(mirrored, plain.flip(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("flip", [False, True])
def test_matches_hamers_opencv_crop_up_to_the_pixel_centre_convention(flip):
    img = _smooth_image(120, 160, seed=1)
    box = np.array([100.0, 30.0, 150.0, 80.0])  # the enlarged crop runs off the right edge
    centre, size = crop_params(torch.tensor(box)[None], rescale=2.0)
    c_cv, s = centre[0].numpy(), float(size[0])
    reference = _hamer_patch(img, c_cv[0], c_cv[1], s, flip)[:, 32:-32]
    # HaMeR's OpenCV warp puts pixel centres on integers; the package puts them at +0.5. The
    # same crop results when the centre shifts by half an image pixel minus half a crop pixel
    # (mirrored crops are taken from the flipped image, so their x shift changes sign).
    half_crop_px = 0.5 * s / 256
    cx = c_cv[0] + 0.5 + (half_crop_px if flip else -half_crop_px)
    cy = c_cv[1] + 0.5 - half_crop_px
    ours = crop_hands(
        torch.from_numpy(img)[None], torch.tensor([[cx, cy]], dtype=torch.float64), torch.tensor([s], dtype=torch.float64),
        torch.tensor([flip]), normalize=False,
    )[0].permute(1, 2, 0).numpy()
    assert ours.shape == reference.shape == (256, 192, 3)
    assert (reference == 0).all(-1).any(), "the test box should reach outside the image"
    # OpenCV quantises interpolation weights to 1/32 pixel; a half-pixel misplacement would
    # give a mean error near 1e-2 on this image.
    err = np.abs(ours - reference)
    assert err.mean() < 1.5e-3 and err.max() < 0.02


def test_normalisation_and_black_border():
    image = torch.tensor(IMAGENET_MEAN).expand(1, 20, 20, 3).clone()
    crop = crop_hands(image, torch.tensor([[10.0, 10.0]]), torch.tensor([40.0]), torch.tensor([False]), out_hw=(40, 40))
    torch.testing.assert_close(crop[0, :, 20, 20], torch.zeros(3), atol=1e-6, rtol=0)
    black = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(crop[0, :, 0, 0], black, atol=1e-6, rtol=0)


def test_uint8_crops_round_trip_to_the_backbone_input():
    image = torch.from_numpy(_smooth_image(64, 64))[None]
    args = (torch.tensor([[30.0, 33.0]]), torch.tensor([50.0]), torch.tensor([True]))
    crop01 = crop_hands(image, *args, out_hw=(32, 24), normalize=False)
    direct = crop_hands(image, *args, out_hw=(32, 24))
    via_uint8 = uint8_crops_to_input(crops_to_uint8(crop01))
    assert crops_to_uint8(crop01).dtype == torch.uint8
    torch.testing.assert_close(via_uint8, direct, atol=0.5 / 255 / min(IMAGENET_STD) + 1e-6, rtol=0)


def test_crop_image_coordinates_round_trip():
    gen = torch.Generator().manual_seed(0)
    centre = torch.rand(6, 2, generator=gen, dtype=torch.float64) * 500
    size = torch.rand(6, generator=gen, dtype=torch.float64) * 200 + 20
    flip = torch.tensor([True, False, True, False, False, True])
    pts = torch.rand(6, 21, 2, generator=gen, dtype=torch.float64) * 256
    for out_hw in [(256, 192), (256, 256), (64, 48)]:
        back = image_to_crop(crop_to_image(pts, centre, size, flip, out_hw), centre, size, flip, out_hw)
        torch.testing.assert_close(back, pts)
    # The crop centre is the box centre; the full square's corners span `size`.
    centre_pt = crop_to_image(torch.tensor([[[96.0, 128.0]]], dtype=torch.float64).expand(6, 1, 2), centre, size, flip)
    torch.testing.assert_close(centre_pt[:, 0], centre)
    corners = crop_to_image(torch.tensor([[[0.0, 0.0], [256.0, 256.0]]], dtype=torch.float64).expand(6, 2, 2),
                            centre, size, flip, (256, 256))
    torch.testing.assert_close((corners[:, 1] - corners[:, 0]).abs(), size[:, None].expand(6, 2))


def test_batches_match_single_crops_and_inputs_may_be_uint8():
    images = torch.stack([torch.from_numpy(_smooth_image(48, 64, seed=s)) for s in range(3)])
    centre = torch.tensor([[20.0, 24.0], [40.0, 10.0], [32.0, 30.0]])
    size = torch.tensor([30.0, 50.0, 80.0])
    flip = torch.tensor([True, False, True])
    batch = crop_hands(images, centre, size, flip, out_hw=(32, 24))
    for i in range(3):
        single = crop_hands(images[i : i + 1], centre[i : i + 1], size[i : i + 1], flip[i : i + 1], out_hw=(32, 24))
        torch.testing.assert_close(batch[i : i + 1], single)
    u8 = crops_to_uint8(images.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    from_u8 = crop_hands(u8, centre, size, flip, out_hw=(32, 24), normalize=False)
    from_float = crop_hands(u8.float() / 255, centre, size, flip, out_hw=(32, 24), normalize=False)
    torch.testing.assert_close(from_u8, from_float)
    # Both hands of one image in one call equal two separate calls.
    two = crop_hands_per_image(images[:1], centre[None, :2], size[None, :2], flip[None, :2], (32, 24))
    torch.testing.assert_close(two[0], crop_hands(images[:1].expand(2, -1, -1, -1), centre[:2], size[:2], flip[:2], (32, 24)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_crops_match_cpu():
    images = torch.from_numpy(_smooth_image(720, 1280))[None].expand(4, -1, -1, -1)
    centre = torch.tensor([[600.0, 300.0], [10.0, 700.0], [1270.0, 5.0], [640.0, 360.0]])
    size = torch.tensor([200.0, 300.0, 150.0, 700.0])
    flip = torch.tensor([True, False, True, False])
    cpu = crop_hands(images, centre, size, flip)
    gpu = crop_hands(images.cuda(), centre.cuda(), size.cuda(), flip.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
