"""The hand4dgs-sequence nerfstudio dataparser: cameras, times, metadata, splits, CLI registration."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image

from hand4dgs_ns.data.sequence_format import read_sequence
from hand4dgs_ns.dataparsers.hand_metadata import HandSequencesMetadata, hand_metadata
from hand4dgs_ns.dataparsers.sequence_dataparser import SequenceDataParser, SequenceDataParserConfig
from hand4dgs_ns.errors import Hand4DGSError


def _outputs(data: Path, split: str = "train", **options):
    return SequenceDataParserConfig(data=data, **options).setup().get_dataparser_outputs(split)


@pytest.fixture
def two_sequences(make_sequence, tmp_path) -> Path:
    make_sequence("b_seq", num_frames=9, seed=1, masks=False, views=("cam0",))
    make_sequence("a_seq", num_frames=6, seed=0)
    return tmp_path


def test_config_builds_a_time_aware_parser():
    parser = SequenceDataParserConfig(data=Path("x")).setup()
    assert isinstance(parser, SequenceDataParser) and parser.includes_time


def test_world_point_projects_to_the_same_pixel_through_nerfstudio_cameras(tiny_sequence):
    sequence = read_sequence(tiny_sequence)
    cameras = _outputs(tiny_sequence, eval_mode="all").cameras
    point = sequence.hands.pseudo_joints[2, 0, 5].astype(np.float64)
    for i in range(sequence.num_frames):
        K, c2w = sequence.cameras.K[i].astype(np.float64), sequence.cameras.c2w[i].astype(np.float64)
        p_cv = np.linalg.inv(c2w) @ np.append(point, 1.0)
        assert p_cv[2] > 0  # in front of the OpenCV camera
        u, v = (K @ p_cv[:3])[:2] / p_cv[2]

        c2w_gl = np.vstack([cameras.camera_to_worlds[i].double().numpy(), [0, 0, 0, 1]])
        p_gl = np.linalg.inv(c2w_gl) @ np.append(point, 1.0)
        assert p_gl[2] < 0  # OpenGL cameras look down -z
        fx, fy, cx, cy = (getattr(cameras, k)[i, 0].item() for k in ("fx", "fy", "cx", "cy"))
        np.testing.assert_allclose([fx * p_gl[0] / -p_gl[2] + cx, -fy * p_gl[1] / -p_gl[2] + cy], [u, v], atol=1e-3)

        # nerfstudio's own ray through pixel (u, v) passes through the point.
        rays = cameras.generate_rays(camera_indices=i, coords=torch.tensor([[v, u]], dtype=torch.float32))
        to_point = torch.from_numpy(point).float() - rays.origins[0]
        direction = rays.directions[0]
        assert torch.dot(to_point, direction) > 0
        assert torch.linalg.cross(to_point, direction).norm() < 1e-4


def test_poses_are_not_reoriented_or_rescaled(tiny_sequence):
    sequence = read_sequence(tiny_sequence)
    outputs = _outputs(tiny_sequence, eval_mode="all")
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    expected = torch.from_numpy(sequence.cameras.c2w) @ flip
    torch.testing.assert_close(outputs.cameras.camera_to_worlds, expected[:, :3, :4])
    assert outputs.dataparser_scale == 1.0
    torch.testing.assert_close(outputs.dataparser_transform, torch.eye(4)[:3])
    assert outputs.cameras.width[0, 0].item() == 64 and outputs.cameras.height[0, 0].item() == 48


def test_times_are_normalised_per_sequence(two_sequences, make_sequence):
    make_sequence("c_single", num_frames=1, seed=2)
    outputs = _outputs(two_sequences, eval_mode="all")
    times = outputs.cameras.times[:, 0]
    metadata = hand_metadata(outputs.metadata)
    names = [s.name for s in metadata.sequences]
    assert names == ["a_seq", "b_seq", "c_single"]
    for s, frames in enumerate((6, 9, 1)):
        seq_times = times[metadata.sequence_index == s]
        expected = torch.linspace(0, 1, frames) if frames > 1 else torch.zeros(1)
        torch.testing.assert_close(seq_times, expected)
    torch.testing.assert_close(outputs.cameras.metadata["frame_index"][:, 0], metadata.frame_index)
    torch.testing.assert_close(outputs.cameras.metadata["sequence_index"][:, 0], metadata.sequence_index)


def test_single_camera_keeps_its_frame_and_sequence_index(two_sequences):
    cameras = _outputs(two_sequences, eval_mode="all").cameras
    assert cameras.metadata["frame_index"].shape == (15, 1) and cameras.metadata["frame_index"].dtype == torch.long
    one = cameras[8]
    assert one.shape == ()
    assert one.metadata["sequence_index"].tolist() == [1] and one.metadata["frame_index"].tolist() == [2]
    sliced = cameras[8:9]
    assert sliced.metadata["frame_index"].tolist() == [[2]] and sliced.times.tolist() == [[0.25]]


def test_full_image_datamanager_passes_hand_data_and_indices_through(two_sequences):
    config = FullImageDatamanagerConfig(dataparser=SequenceDataParserConfig(data=two_sequences, eval_interval=4))
    datamanager = config.setup(device="cpu", test_mode="val")
    assert datamanager.includes_time
    camera, batch = datamanager.next_train(0)
    s, f = camera.metadata["sequence_index"].item(), camera.metadata["frame_index"].item()
    metadata = hand_metadata(datamanager.train_dataset.metadata)
    assert f % 4 != 0
    expected = np.asarray(Image.open(metadata.sequences[s].image_paths[f]), np.float32) / 255
    np.testing.assert_allclose(batch["image"].numpy(), expected, atol=1e-6)
    camera, _ = datamanager.next_eval(0)
    assert camera.metadata["frame_index"].item() % 4 == 0


def test_metadata_carries_every_sequence_and_zeroes_invalid_hands(two_sequences):
    outputs = _outputs(two_sequences, split="val", eval_interval=4)
    metadata = hand_metadata(outputs.metadata)
    assert outputs.mask_filenames is None
    a, b = (read_sequence(two_sequences / name) for name in ("a_seq", "b_seq"))
    tensors = metadata.sequences[0]
    assert (tensors.name, tensors.num_frames, tensors.fps, tensors.width, tensors.height) == ("a_seq", 6, 30.0, 64, 48)
    torch.testing.assert_close(tensors.valid, torch.from_numpy(a.hands.valid))
    valid = a.hands.valid
    torch.testing.assert_close(
        tensors.pseudo_joints[torch.from_numpy(valid)], torch.from_numpy(a.hands.pseudo_joints[valid])
    )
    assert not valid[1, 1] and tensors.pseudo_joints[1, 1].abs().sum() == 0 and tensors.bbox[1, 1].abs().sum() == 0
    assert tensors.pseudo_verts.shape == (6, 2, 12, 3) and tensors.gt_joints.shape == (6, 2, 21, 3)
    torch.testing.assert_close(tensors.c2w, torch.from_numpy(a.cameras.c2w))
    assert tensors.mask_paths == tuple(a.mask_paths) and metadata.sequences[1].mask_paths is None

    # val split: frames 0 and 4 of each sequence, plus frame 8 of the 9-frame one
    assert list(zip(metadata.sequence_index.tolist(), metadata.frame_index.tolist(), strict=True)) == [
        (0, 0),
        (0, 4),
        (1, 0),
        (1, 4),
        (1, 8),
    ]
    assert outputs.image_filenames == [
        a.image_paths[0],
        a.image_paths[4],
        b.image_paths[0],
        b.image_paths[4],
        b.image_paths[8],
    ]
    assert metadata.mask_filenames == (a.mask_paths[0], a.mask_paths[4], None, None, None)

    (view,) = metadata.views
    assert (view.sequence_index, view.name, len(view.image_filenames)) == (1, "cam0", 9)
    assert view.cameras.shape == (9,) and view.cameras.metadata["sequence_index"].unique().tolist() == [1]
    torch.testing.assert_close(view.cameras.times[:, 0], torch.linspace(0, 1, 9))

    # nerfstudio deep-copies metadata into each dataset; the hand data is shared, not copied
    assert copy.deepcopy(outputs.metadata)["hand4dgs"] is metadata
    assert isinstance(InputDataset(outputs).metadata["hand4dgs"], HandSequencesMetadata)


def test_scene_box_bounds_cameras_and_hands(two_sequences):
    outputs = _outputs(two_sequences, eval_mode="all", scene_box_margin=0.05)
    aabb = outputs.scene_box.aabb
    metadata = hand_metadata(outputs.metadata)
    for sequence in metadata.sequences:
        points = torch.cat([sequence.c2w[:, :3, 3], sequence.pseudo_joints[sequence.valid].reshape(-1, 3)])
        assert (points >= aabb[0] + 0.05 - 1e-6).all() and (points <= aabb[1] - 0.05 + 1e-6).all()
    view_centres = metadata.views[0].cameras.camera_to_worlds[:, :3, 3]
    assert (view_centres >= aabb[0]).all() and (view_centres <= aabb[1]).all()


def _pairs(outputs):
    metadata = hand_metadata(outputs.metadata)
    return set(zip(metadata.sequence_index.tolist(), metadata.frame_index.tolist(), strict=True))


def test_interval_split_holds_out_every_nth_frame_of_each_sequence(two_sequences):
    train = _pairs(_outputs(two_sequences, "train", eval_interval=3))
    test = _pairs(_outputs(two_sequences, "test", eval_interval=3))
    assert test == {(0, 0), (0, 3), (1, 0), (1, 3), (1, 6)}
    assert train.isdisjoint(test) and len(train | test) == 15


def test_sequence_split_holds_out_whole_sequences(two_sequences, make_sequence):
    make_sequence("c_seq", num_frames=3, seed=3)
    options = dict(eval_mode="sequences", eval_sequences=("b_seq",))
    train = _outputs(two_sequences, "train", **options)
    val = _outputs(two_sequences, "val", **options)
    assert {s for s, _ in _pairs(train)} == {0, 2} and len(train.image_filenames) == 9
    assert _pairs(val) == {(1, f) for f in range(9)}
    assert [s.name for s in hand_metadata(val.metadata).sequences] == ["a_seq", "b_seq", "c_seq"]
    all_train = _pairs(_outputs(two_sequences, "train", eval_mode="all"))
    assert all_train == _pairs(_outputs(two_sequences, "val", eval_mode="all")) and len(all_train) == 18


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(eval_mode="sequences"), "no sequence is named"),
        (dict(eval_mode="sequences", eval_sequences=("zzz",)), "no sequence named 'zzz'"),
        (dict(eval_mode="sequences", eval_sequences=("a_seq", "b_seq")), "holds out every sequence"),
        (dict(eval_sequences=("a_seq",)), "eval_sequences is set but eval_mode is 'interval'"),
        (dict(eval_interval=1), "eval_interval is 1"),
    ],
)
def test_bad_split_options_are_one_clear_sentence(two_sequences, options, message):
    with pytest.raises(Hand4DGSError, match=message) as error:
        _outputs(two_sequences, **options)
    assert str(error.value).startswith(str(two_sequences)) and "\n" not in str(error.value)


def test_broken_folder_names_the_first_problem(two_sequences, tmp_path):
    (two_sequences / "b_seq" / "hands.npz").unlink()
    with pytest.raises(Hand4DGSError, match=r"b_seq/hands\.npz: is missing"):
        _outputs(two_sequences)
    with pytest.raises(Hand4DGSError, match="no such folder"):
        _outputs(tmp_path / "nowhere")


def _ns_train(*args: str) -> subprocess.CompletedProcess:
    ns_train = Path(sys.executable).parent / "ns-train"
    return subprocess.run([str(ns_train), *args], capture_output=True, text=True, timeout=120)


def test_ns_train_help_loads_every_plugin():
    """On a CPU-only install too: the torchvision guard lets nerfstudio import torchvision."""
    result = _ns_train("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "splatfacto" in result.stdout and "hand4dgs" in result.stdout


def test_ns_train_lists_the_dataparser_options():
    result = _ns_train("splatfacto", "hand4dgs-sequence", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for option in (
        "--data",
        "--eval-mode {interval,sequences,split-file,all}",
        "--eval-interval",
        "--eval-sequences",
        "--check-frames",
    ):
        assert option in result.stdout, option
