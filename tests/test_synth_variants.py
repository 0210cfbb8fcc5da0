"""Tests of the synthetic generator's appearance variants: presets, lighting, skin, arms, camera effects, objects."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
import tyro
from PIL import Image
from scipy import ndimage

from hand4dgs_ns.cli.synth import Synth
from hand4dgs_ns.cli.synth_set import SynthSet
from hand4dgs_ns.data.sequence_format import MASK_OCCLUDER, Sequence, read_sequence
from hand4dgs_ns.hands.open_hand import load_open_hand
from hand4dgs_ns.synthetic.camera_effects import exposure_gains
from hand4dgs_ns.synthetic.clip import SynthConfig, build_scene, synthesize_clip
from hand4dgs_ns.synthetic.clip_set import video_seed
from hand4dgs_ns.synthetic.variants import PRESETS, AppearanceConfig, Preset

# The default settings must keep writing the same clip (the default demo clip and earlier
# benchmarks depend on it). Masks are integers and are compared exactly, with the hash taken from
# the generator before appearance variants existed. Colours and hand arrays are compared with a
# tolerance: their last bits depend on which CPU kernels torch and numpy pick on a machine (1 ulp
# of the joints between two of torch's kernel sets), so exact hashes of them would test the CPU.
# The reference (tests/data/default_clip_reference.npz) holds the first frame and hands.npz.
DEFAULT_FIRST_MASK = "420453625aa01eb54962668495083d8ecbe27e1ef6ca0c24e93633633be8ec20"
DEFAULT_REFERENCE = Path(__file__).parent / "data" / "default_clip_reference.npz"


def _fingerprint(root: Path) -> dict[str, str]:
    """SHA-256 of every image's pixels and every archive's arrays (zip headers hold write times)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".png":
            data = np.asarray(Image.open(path)).tobytes()
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                data = b"".join(k.encode() + np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))
        else:
            continue
        digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


def test_default_settings_write_the_same_clip_as_before(tmp_path) -> None:
    config = SynthConfig(seed=3, num_frames=4, width=96, height=72)
    root = synthesize_clip(tmp_path / "clip", config, progress=False).path
    digests = _fingerprint(root)
    assert len(digests) == 28
    assert digests["masks/000000.png"] == DEFAULT_FIRST_MASK
    with np.load(DEFAULT_REFERENCE) as reference, np.load(root / "hands.npz") as hands:
        for key in ("valid", "gt_valid"):
            np.testing.assert_array_equal(hands[key], reference[key])
        for key in ("gt_joints", "pseudo_joints"):
            np.testing.assert_allclose(hands[key], reference[key], rtol=0, atol=1e-5)  # metres
        np.testing.assert_allclose(hands["bbox"], reference["bbox"], rtol=0, atol=1e-2)  # pixels
        rgb = np.asarray(Image.open(root / "rgb" / "000000.png")).astype(np.int16)
        difference = np.abs(rgb - reference["rgb0"].astype(np.int16))
        assert difference.max() <= 2 and difference.mean() < 0.05


TINY = SynthConfig(seed=3, num_frames=4, width=96, height=72, static_views=False)
CLEAN = AppearanceConfig(noise=0.0)  # switches are compared on noiseless frames


def _images(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in paths]).astype(np.float64)


def _render(tmp_path: Path, name: str, config: SynthConfig) -> Sequence:
    return read_sequence(synthesize_clip(tmp_path / name, config, progress=False).path, check_frames=True)


def _switched(tmp_path: Path, name: str, frames: int = 4, **switches) -> Sequence:
    appearance = replace(CLEAN, **switches)
    return _render(tmp_path, name, replace(TINY, num_frames=frames, appearance=appearance))


def _hands_arrays(seq: Sequence) -> dict[str, np.ndarray]:
    with np.load(seq.root / "hands.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def preset_clips(tmp_path_factory) -> dict[str, Sequence]:
    root = tmp_path_factory.mktemp("presets")
    return {preset: _render(root, preset, replace(TINY, preset=preset)) for preset in get_args(Preset)}


def test_every_preset_writes_a_valid_clip_with_the_same_labels(preset_clips) -> None:
    base = preset_clips["default"]
    base_masks = _images(base.mask_paths)
    for preset, seq in preset_clips.items():
        assert seq.num_frames == 4 and (seq.cameras.width, seq.cameras.height) == (96, 72), preset
        # Appearance never touches the cameras, ground truth, pseudo-labels or usable flags.
        np.testing.assert_array_equal(seq.cameras.c2w, base.cameras.c2w)
        for key, value in _hands_arrays(base).items():
            np.testing.assert_array_equal(_hands_arrays(seq)[key], value, err_msg=f"{preset}: {key}")
        # Masks come from geometry: the same as the default's except where an object covers them.
        masks = _images(seq.mask_paths)
        assert set(np.unique(masks)) <= {0, 1, 2, 3}
        objects = PRESETS[preset].objects > 0
        assert objects == (masks != base_masks).any(), preset
        assert (masks[masks != base_masks] == MASK_OCCLUDER).all(), preset
        if preset != "default":
            assert not np.array_equal(_images(seq.image_paths), _images(base.image_paths)), preset


def test_same_seed_and_preset_give_identical_files(preset_clips, tmp_path) -> None:
    first = preset_clips["all"].root
    again = synthesize_clip(tmp_path / "again", replace(TINY, preset="all"), progress=False).path
    assert _fingerprint(again) == _fingerprint(first)


def test_jpeg_adds_8x8_block_structure(tmp_path) -> None:
    clean = _images(_switched(tmp_path, "clean", frames=2).image_paths).mean(-1)
    jpeg = _images(_switched(tmp_path, "jpeg", frames=2, jpeg_quality=10).image_paths).mean(-1)
    assert np.abs(jpeg - clean).mean() > 1.0

    def blockiness(image: np.ndarray) -> float:
        """Mean jump across 8-pixel block borders over the mean jump elsewhere, both axes."""
        steps = [np.abs(np.diff(image, axis=axis)) for axis in (1, 2)]
        border = np.arange(95) % 8 == 7, np.arange(71) % 8 == 7
        across = [steps[0][:, border[1]].mean(), steps[1][:, :, border[0]].mean()]
        inside = [steps[0][:, ~border[1]].mean(), steps[1][:, :, ~border[0]].mean()]
        return float(np.mean(across) / np.mean(inside))

    assert blockiness(jpeg) > 1.3 * blockiness(clean)


def test_motion_blur_smooths_the_hands_and_keeps_masks_sharp(tmp_path) -> None:
    sharp = _switched(tmp_path, "sharp", frames=6)
    blurred = _switched(tmp_path, "blurred", frames=6, shutter=1.0)
    np.testing.assert_array_equal(_images(blurred.mask_paths), _images(sharp.mask_paths))
    hands = np.isin(_images(sharp.mask_paths), (1, 2))

    def gradient_energy(seq: Sequence) -> float:
        image = _images(seq.image_paths).mean(-1)
        gy, gx = np.gradient(image, axis=(1, 2))
        return float(((gx**2 + gy**2) * hands).sum())

    assert gradient_energy(blurred) < 0.9 * gradient_energy(sharp)


def test_objects_cover_hand_pixels_as_occluders(tmp_path) -> None:
    plain = _switched(tmp_path, "plain", frames=6)
    with_objects = _switched(tmp_path, "objects", frames=6, objects=3)
    before, after = _images(plain.mask_paths), _images(with_objects.mask_paths)
    hidden = np.isin(before, (1, 2)) & (after == MASK_OCCLUDER)
    assert hidden.sum() > 20, "objects hide parts of the hands"
    assert (after[after != before] == MASK_OCCLUDER).all()
    # Their own colour shows where they are; elsewhere the frame is untouched.
    rgb_before, rgb_after = _images(plain.image_paths), _images(with_objects.image_paths)
    assert np.abs(rgb_after - rgb_before)[hidden].mean() > 10.0
    far = ~ndimage.binary_dilation(after != before, iterations=2, structure=np.ones((1, 3, 3)))
    assert np.abs(rgb_after - rgb_before)[far].max() <= 1.0
    for key, value in _hands_arrays(plain).items():
        np.testing.assert_array_equal(_hands_arrays(with_objects)[key], value)


def _hand_pixels(seq: Sequence) -> np.ndarray:
    """(P, 3) colours of the hand pixels of every frame."""
    return _images(seq.image_paths)[np.isin(_images(seq.mask_paths), (1, 2))]


def test_coloured_light_shifts_the_hands_towards_the_key_colour(tmp_path) -> None:
    white = _hand_pixels(_switched(tmp_path, "white", frames=2)).mean(0)
    coloured = _hand_pixels(_switched(tmp_path, "coloured", frames=2, lighting="coloured")).mean(0)
    key = build_scene(replace(TINY, num_frames=2, appearance=replace(CLEAN, lighting="coloured"))).lighting.lamp_colour
    shift = coloured / coloured.sum() - white / white.sum()
    assert np.linalg.norm(shift) > 0.01
    assert shift @ (key / key.sum() - 1.0 / 3.0) > 0


def test_lighting_models_change_the_shading_contrast(tmp_path) -> None:
    def contrast(lighting: str) -> float:
        luma = _hand_pixels(_switched(tmp_path, lighting, frames=2, lighting=lighting)).mean(-1)
        return float(luma.std() / luma.mean())

    flat, lamp, sun = contrast("flat"), contrast("head-lamp"), contrast("directional")
    assert flat < lamp < sun, (flat, lamp, sun)


def test_specular_highlights_brighten_the_brightest_skin(tmp_path) -> None:
    matte = _hand_pixels(_switched(tmp_path, "matte", frames=2)).mean(-1)
    glossy = _hand_pixels(_switched(tmp_path, "glossy", frames=2, specular=True)).mean(-1)
    assert np.percentile(glossy, 99) > np.percentile(matte, 99) + 5.0


def test_skin_detail_darkens_the_back_of_the_hand_and_whitens_nail_tips() -> None:
    plain = build_scene(replace(TINY, num_frames=2)).mesh.albedo
    marked = build_scene(replace(TINY, num_frames=2, appearance=AppearanceConfig(skin_detail=True))).mesh.albedo
    change = (marked - plain).mean(-1)
    assert (change < -0.01).sum() > 100, "veins, freckles and creases darken the skin"
    assert (change > 0.01).sum() > 5, "nail tips turn paler"
    hands = load_open_hand("left").num_vertices + load_open_hand("right").num_vertices
    # The arms change only on their first ring, which takes the hands' colours to close the seam.
    assert (marked[hands:] != plain[hands:]).any(-1).float().mean() < 0.15


def test_bare_arms_have_no_sleeve() -> None:
    def colour_shares(arms: str) -> list[float]:
        """Shares of the arm tubes' vertices by colour, largest first (wrist loops take the hands' colours)."""
        scene = build_scene(replace(TINY, num_frames=2, appearance=AppearanceConfig(arms=arms)))
        hands = scene.templates[0].num_vertices + scene.templates[1].num_vertices
        _, counts = torch.unique(scene.mesh.albedo[hands:], dim=0, return_counts=True)
        return sorted((counts / counts.sum()).tolist(), reverse=True)

    sleeved, bare = colour_shares("sampled"), colour_shares("bare")
    assert sleeved[1] > 0.15, "seed 3's subject wears sleeves: skin and cloth"
    assert bare[0] > 0.8 and bare[1] < 0.05, "bare arms are skin from the wrist to the shoulder"


def test_noise_level_sets_the_noise(tmp_path) -> None:
    clean = _images(_switched(tmp_path, "quiet", frames=2).image_paths)
    noisy = _images(_switched(tmp_path, "noisy", frames=2, noise=0.04).image_paths)
    mid = (clean > 40) & (clean < 215)  # away from clipping
    assert 0.04 * 255 * 0.9 < (noisy - clean)[mid].std() < 0.04 * 255 * 1.1


def test_exposure_drifts_smoothly_per_frame(tmp_path) -> None:
    gains = exposure_gains(np.random.default_rng(0), 600, 0.3, 30.0)
    log = np.log(gains)
    assert gains.shape == (600, 3) and 0.2 < log.std() < 0.4
    assert np.abs(np.diff(log, axis=0)).max() < 0.05, "smooth from frame to frame"

    config = replace(TINY, num_frames=4, appearance=replace(CLEAN, exposure=0.3))
    scene_gains = build_scene(config).exposure[:, 0]
    steady = _images(_switched(tmp_path, "steady").image_paths)
    drifting = _images(_render(tmp_path, "drifting", config).image_paths)
    ratio = drifting.mean((1, 2, 3)) / steady.mean((1, 2, 3))
    np.testing.assert_allclose(ratio, scene_gains, rtol=0.06)
    assert np.abs(np.log(scene_gains)).mean() > 0.03


def test_preset_flags_reach_both_commands(tmp_path) -> None:
    synth = tyro.cli(Synth, args=[str(tmp_path / "x"), "--preset", "phone", "--appearance.noise", "0.05"])
    assert synth.config.look == replace(PRESETS["phone"], noise=0.05)
    # A flag given at the default preset's value still overrides: phone without its JPEG and drift.
    synth = tyro.cli(Synth, args=[str(tmp_path / "x"), "--preset", "phone", "--appearance.jpeg-quality", "0", "--appearance.exposure", "0"])
    assert synth.config.look == replace(PRESETS["phone"], jpeg_quality=0, exposure=0.0)
    assert synth.config.look != PRESETS["phone"]
    flags = ["--frames", "2", "--width", "48", "--height", "36", "--no-static-views", "--supersample", "1"]
    args = [str(tmp_path / "set"), "--train", "1", "--test", "1", "--preset", "harsh", *flags]
    synth_set = tyro.cli(SynthSet, args=args)
    assert synth_set.config.preset == "harsh"
    synth_set.main()
    name = "train_000"
    seq = read_sequence(tmp_path / "set" / name)
    seed = video_seed(0, "train", 0)
    base = synthesize_clip(tmp_path / "base", replace(synth_set.config, preset="default", seed=seed), progress=False)
    harsh = synthesize_clip(tmp_path / "harsh", replace(synth_set.config, seed=seed), progress=False)
    np.testing.assert_array_equal(_images(seq.image_paths), _images(read_sequence(harsh.path).image_paths))
    assert not np.array_equal(_images(seq.image_paths), _images(read_sequence(base.path).image_paths))
