"""Layout detection of hand data folders and the options for reading H2O and ARCTIC."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tyro
import yaml
from arctic_fixture import arctic_fixture_data_dir, write_arctic_fixture
from conftest import write_random_sequence
from fake_mano import write_fake_mano_dir
from h2o_fixture import write_h2o_fixture
from hamer_fixture import write_hamer_fixture

from hand4dgs_ns.data.sequence_format import read_sequence
from hand4dgs_ns.datasets.detect import (
    MANO_DIR_ENV,
    DatasetOptions,
    detect_layout,
    load_sequences,
    read_dataset_sequences,
    require_layout,
)
from hand4dgs_ns.errors import Hand4DGSError

ARCTIC_SUBJECTS = ("s01", "s05")
ARCTIC_SEQUENCES = ("box_grab_01", "ketchup_grab_01")  # s05/ketchup_grab_01 is a paper test video
ARCTIC_TRIM = 2
ARCTIC_ANNOTATED = 8


@pytest.fixture
def mano_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "mano"
    write_fake_mano_dir(folder, monkeypatch)
    monkeypatch.delenv(MANO_DIR_ENV, raising=False)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def h2o(tmp_path, mano_dir) -> Path:
    """subject1 and subject4, actions h1 and h2, one sequence each (paper test: subject4/h1)."""
    return write_h2o_fixture(tmp_path / "h2o", mano_dir, subjects=("subject1", "subject4"), actions=("h1", "h2"))


@pytest.fixture
def arctic(tmp_path) -> Path:
    return write_arctic_fixture(
        tmp_path / "arctic", ARCTIC_SUBJECTS, ARCTIC_SEQUENCES, num_annotated=ARCTIC_ANNOTATED, width=60, height=40
    )


def _options(mano_dir: Path, **changes) -> DatasetOptions:
    return DatasetOptions(**{"mano_dir": mano_dir, "arctic_trim": ARCTIC_TRIM, **changes})


def _names(path: Path, options: DatasetOptions) -> list[str]:
    return [video.name for video in read_dataset_sequences(path, options)]


def _one_sentence(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith("."), message
    assert str(path) in message
    return message


# ---- detection -----------------------------------------------------------------------------


def test_sequence_folders_are_detected_alone_and_in_a_folder(tmp_path):
    clip = write_random_sequence(tmp_path / "clips" / "a", num_frames=2)
    write_random_sequence(tmp_path / "clips" / "b", num_frames=2, seed=1)
    assert detect_layout(clip) == "sequence"
    assert detect_layout(tmp_path / "clips") == "sequence"
    assert require_layout(tmp_path / "clips", "sequence") == "sequence"


def test_a_sequence_with_a_view_named_cam4_is_not_h2o(tmp_path):
    # A converted H2O video keeps its static cameras as views; cam4 must not make it look like H2O.
    clip = write_random_sequence(tmp_path / "clip", num_frames=2, views=("cam4",))
    assert detect_layout(clip) == "sequence"


def test_a_damaged_sequence_folder_is_still_a_sequence(tmp_path):
    (tmp_path / "clip" / "rgb").mkdir(parents=True)
    assert detect_layout(tmp_path / "clip") == "sequence"
    with pytest.raises(Hand4DGSError, match=r"clip/rgb: holds no \.png or \.jpg frame"):
        load_sequences(tmp_path / "clip", DatasetOptions())


def test_h2o_is_detected_at_every_level(h2o):
    for folder in (h2o, h2o / "subject4", h2o / "subject4" / "h1", h2o / "subject4" / "h1" / "0", h2o / "subject4" / "h1" / "0" / "cam4"):
        assert detect_layout(folder) == "h2o", folder


def test_arctic_is_detected_at_every_level(arctic):
    data = arctic_fixture_data_dir(arctic)
    for folder in (
        arctic,
        arctic / "data",
        data.parent,
        data,
        data / "raw_seqs",
        data / "raw_seqs" / "s05",
        data / "images",
        data / "images" / "s05" / "box_grab_01",
        data / "cropped_images" / "s05",
    ):
        assert detect_layout(folder) == "arctic", folder


def test_unknown_layout_is_one_sentence_naming_what_was_looked_for(tmp_path):
    folder = tmp_path / "holiday"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "beach.jpg").write_bytes(b"not really")
    with pytest.raises(Hand4DGSError) as error:
        detect_layout(folder)
    message = _one_sentence(error, folder)
    assert message.startswith(f"{folder}: no hand data found")
    for part in ("rgb/ + cameras.npz + hands.npz", "subject*/<action>/<n>/cam4/", "raw_seqs/", "meta/misc.json"):
        assert part in message, part


def test_missing_path_is_one_sentence(tmp_path):
    missing = tmp_path / "nowhere"
    for call in (lambda: detect_layout(missing), lambda: load_sequences(missing, DatasetOptions())):
        with pytest.raises(Hand4DGSError) as error:
            call()
        assert _one_sentence(error, missing).startswith(f"{missing}: no such folder")


def test_restricted_layout_refuses_another_dataset(h2o, arctic):
    assert require_layout(h2o, "h2o") == "h2o" and require_layout(arctic, "arctic") == "arctic"
    with pytest.raises(Hand4DGSError) as error:
        require_layout(h2o, "arctic")
    message = _one_sentence(error, h2o)
    assert message.startswith(f"{h2o}: not an ARCTIC folder") and "raw_seqs/" in message
    with pytest.raises(Hand4DGSError, match="hand4dgs-sequence dataparser"):
        require_layout(arctic, "h2o")


def test_sequence_folders_are_read_as_they_are(tmp_path):
    write_random_sequence(tmp_path / "clips" / "b", num_frames=3, seed=1)
    write_random_sequence(tmp_path / "clips" / "a", num_frames=2)
    loaded = load_sequences(tmp_path / "clips", DatasetOptions())
    assert [s.name for s in loaded] == ["a", "b"]
    np.testing.assert_array_equal(loaded[1].cameras.c2w, read_sequence(tmp_path / "clips" / "b").cameras.c2w)
    with pytest.raises(Hand4DGSError, match="not an H2O or ARCTIC folder"):
        read_dataset_sequences(tmp_path / "clips", DatasetOptions())


# ---- options -------------------------------------------------------------------------------


def test_mano_dir_falls_back_to_the_environment(h2o, mano_dir, monkeypatch):
    with pytest.raises(Hand4DGSError) as error:
        read_dataset_sequences(h2o, DatasetOptions())
    message = _one_sentence(error, h2o)
    assert "--mano-dir" in message and MANO_DIR_ENV in message and "MANO_RIGHT.pkl" in message

    monkeypatch.setenv(MANO_DIR_ENV, str(mano_dir))
    assert DatasetOptions().resolved_mano_dir(h2o) == mano_dir
    assert _names(h2o, DatasetOptions()) == ["subject1_h1_0", "subject1_h2_0", "subject4_h1_0", "subject4_h2_0"]
    # The option wins over the environment.
    monkeypatch.setenv(MANO_DIR_ENV, str(h2o / "elsewhere"))
    assert DatasetOptions(mano_dir=mano_dir).resolved_mano_dir(h2o) == mano_dir


def test_a_mano_folder_without_the_files_is_the_standard_sentence(h2o, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Hand4DGSError) as error:
        read_dataset_sequences(h2o, DatasetOptions(mano_dir=empty))
    message = _one_sentence(error, empty / "MANO_RIGHT.pkl")
    assert message.startswith(f"MANO model file {empty / 'MANO_RIGHT.pkl'} not found")
    assert "--mano-dir" in message and MANO_DIR_ENV in message


def test_h2o_paper_split_filters_what_lies_under_the_folder(h2o, mano_dir):
    assert _names(h2o, _options(mano_dir, split="paper-train")) == ["subject1_h1_0", "subject1_h2_0"]
    assert _names(h2o, _options(mano_dir, split="paper-test")) == ["subject4_h1_0"]
    assert _names(h2o / "subject4", _options(mano_dir, split="paper-test")) == ["subject4_h1_0"]
    with pytest.raises(Hand4DGSError) as error:
        read_dataset_sequences(h2o / "subject1", _options(mano_dir, split="paper-test"))
    assert "subject4/h1" in _one_sentence(error, h2o / "subject1")
    with pytest.raises(Hand4DGSError) as error:
        read_dataset_sequences(h2o / "subject4" / "h2", _options(mano_dir, split="paper-train"))
    assert "subject1, subject2, subject3" in _one_sentence(error, h2o / "subject4" / "h2")


def test_arctic_paper_split_and_filters(arctic, mano_dir, tmp_path):
    data = arctic_fixture_data_dir(arctic)
    everything = ["s01_box_grab_01", "s01_ketchup_grab_01", "s05_box_grab_01", "s05_ketchup_grab_01"]
    assert _names(arctic, _options(mano_dir)) == everything
    assert _names(arctic, _options(mano_dir, split="paper-train")) == everything[:2]
    assert _names(arctic, _options(mano_dir, split="paper-test")) == ["s05_ketchup_grab_01"]
    assert _names(arctic, _options(mano_dir, arctic_subjects=("s05",))) == everything[2:]
    assert _names(arctic, _options(mano_dir, arctic_sequences=("s01/ketchup_grab_01", "box_grab_01"))) == everything[:3]
    assert _names(data / "raw_seqs" / "s05", _options(mano_dir, split="paper-test")) == ["s05_ketchup_grab_01"]
    with pytest.raises(Hand4DGSError) as error:
        read_dataset_sequences(data / "raw_seqs" / "s01", _options(mano_dir, split="paper-test"))
    assert "s05/ketchup_grab_01" in _one_sentence(error, data / "raw_seqs" / "s01")


def test_arctic_cropped_and_trim_pass_through(arctic, mano_dir, tmp_path):
    one_video = {"arctic_sequences": ("s05/box_grab_01",), "cache_dir": tmp_path / "own_cache"}
    full, = read_dataset_sequences(arctic, _options(mano_dir, **one_video))
    cropped, = read_dataset_sequences(arctic, _options(mano_dir, arctic_cropped=True, **one_video))
    assert (full.cameras.width, full.cameras.height) == (60, 40)
    assert (cropped.cameras.width, cropped.cameras.height) == (18, 12)
    np.testing.assert_allclose(cropped.cameras.K[:, :2], full.cameras.K[:, :2] * 0.3, rtol=1e-6)
    assert full.num_frames == ARCTIC_ANNOTATED - 2 * ARCTIC_TRIM
    assert all(p.is_relative_to(tmp_path / "own_cache" / "arctic_undistorted") for p in full.image_paths + cropped.image_paths)
    assert "cropped_images" in str(cropped.image_paths[0]) and "cropped_images" not in str(full.image_paths[0])
    untrimmed, = read_dataset_sequences(arctic, _options(mano_dir, arctic_trim=0, **one_video))
    assert untrimmed.num_frames == ARCTIC_ANNOTATED


def test_options_that_select_other_videos_are_refused(h2o, arctic, mano_dir, tmp_path):
    clip = write_random_sequence(tmp_path / "clip", num_frames=2)
    cases = [
        (clip, DatasetOptions(split="paper-test"), "split paper-test"),
        (h2o, _options(mano_dir, arctic_subjects=("s05",)), "arctic_subjects s05"),
        (arctic, _options(mano_dir, h2o_detections=tmp_path / "boxes.npz"), "h2o_detections"),
        (h2o, _options(mano_dir, h2o_detections=tmp_path / "boxes.npz"), "holds 4 H2O videos"),
        (arctic, _options(mano_dir, arctic_trim=-1), "arctic_trim is -1"),
    ]
    for folder, options, expected in cases:
        with pytest.raises(Hand4DGSError) as error:
            load_sequences(folder, options)
        assert expected in _one_sentence(error, folder), expected


def test_h2o_detections_replace_the_boxes_of_one_video(h2o, mano_dir, tmp_path):
    video = h2o / "subject4" / "h1" / "0"
    boxes = tmp_path / "boxes.npz"
    bbox = np.tile(np.array([1.0, 2.0, 30.0, 20.0], np.float32), (4, 2, 1))
    np.savez(boxes, bbox=bbox, valid=np.ones((4, 2), bool))
    seq, = read_dataset_sequences(video, _options(mano_dir, h2o_detections=boxes))
    np.testing.assert_array_equal(seq.bbox, bbox)


def test_load_sequences_attaches_pseudo_labels_masks_and_views(h2o, mano_dir, tmp_path):
    options = _options(mano_dir, split="paper-test", cache_dir=tmp_path / "cache")
    video, = read_dataset_sequences(h2o, options)
    known = write_hamer_fixture(video, mano_dir)
    seq, = load_sequences(h2o, options)
    assert seq.name == "subject4_h1_0" and seq.image_paths == video.image_paths
    np.testing.assert_array_equal(seq.hands.valid, known.valid & video.box_valid)
    np.testing.assert_allclose(seq.hands.pseudo_joints[seq.hands.valid], known.joints_world[known.valid], atol=1e-4)
    np.testing.assert_array_equal(seq.hands.gt_joints, video.gt_joints)
    assert seq.mask_paths is not None and all(p.is_relative_to(tmp_path / "cache" / "masks") for p in seq.mask_paths)
    assert sorted(seq.views) == ["cam0", "cam1", "cam2", "cam3"]


def test_check_frames_decodes_every_dataset_frame(h2o, mano_dir, tmp_path):
    options = _options(mano_dir, split="paper-test", cache_dir=tmp_path / "cache", refine_masks=False)
    video, = read_dataset_sequences(h2o, options)
    write_hamer_fixture(video, mano_dir)
    broken = video.image_paths[2]
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG: its header still reads
    assert len(load_sequences(h2o, options)) == 1
    with pytest.raises(Hand4DGSError) as error:
        load_sequences(h2o, options, check_frames=True)
    assert "cannot be decoded" in _one_sentence(error, broken)
    # Refining the masks reads every frame: the broken one is named already without check_frames.
    with pytest.raises(Hand4DGSError) as error:
        load_sequences(h2o, dataclasses.replace(options, refine_masks=True))
    assert "not a readable image" in _one_sentence(error, broken)


# ---- the options on every command line -----------------------------------------------------

_COMMON_FLAGS = ("--mano-dir", "mano", "--hamer-root", "hamer", "--split", "paper-test", "--box-margin", "0.3",
                 "--cache-dir", "cache")
_H2O_FLAGS = ("--h2o-detections", "boxes.npz")
_ARCTIC_FLAGS = ("--arctic-subjects", "s05", "s08", "--arctic-sequences", "box_grab_01", "--arctic-trim", "50")
_COMMON = dict(mano_dir=Path("mano"), hamer_root=Path("hamer"), split="paper-test", box_margin=0.3, cache_dir=Path("cache"))
_H2O = dict(h2o_detections=Path("boxes.npz"))
_ARCTIC = dict(arctic_subjects=("s05", "s08"), arctic_sequences=("box_grab_01",), arctic_cropped=True, arctic_trim=50)


def _assert_options(options: DatasetOptions, values: dict) -> None:
    """Every field of ``options`` as ``values`` and the common flags set it, the rest at the defaults."""
    expected = dataclasses.replace(DatasetOptions(), **_COMMON, **values)
    assert dataclasses.asdict(options) == dataclasses.asdict(expected)


@pytest.mark.parametrize(
    ("dataparser", "flags", "values", "refused"),
    [
        ("hand4dgs-sequence", (*_H2O_FLAGS, *_ARCTIC_FLAGS, "--arctic-cropped", "True"), {**_H2O, **_ARCTIC}, None),
        ("h2o", _H2O_FLAGS, _H2O, "--arctic-trim"),
        ("arctic", (*_ARCTIC_FLAGS, "--arctic-cropped", "True"), _ARCTIC, "--h2o-detections"),
    ],
)
def test_ns_train_takes_the_dataset_options_by_their_flags(dataparser, flags, values, refused):
    """As ns-train parses them (its tyro union, plugins included), and back from config.yml as ns-eval reads it."""
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    def parse(*args: str):
        return tyro.cli(AnnotatedBaseConfigUnion, args=["hand4dgs", "--data", "clips", dataparser, *args])

    config = parse(*_COMMON_FLAGS, *flags)
    options = config.pipeline.datamanager.dataparser.dataset
    _assert_options(options, values)
    assert yaml.load(yaml.dump(config), Loader=yaml.Loader).pipeline.datamanager.dataparser.dataset == options
    if refused is not None:  # the other dataset's options are not on this dataparser's command line
        with pytest.raises(SystemExit):
            parse(refused, "1")


@pytest.mark.parametrize(
    ("args", "values"),
    [
        (("convert", "h2o", "src", "out", "--h2o-detections", "boxes.npz"), _H2O),
        (
            ("convert", "arctic", "src", "out", "--arctic-subjects", "s05", "s08", "--arctic-sequences", "box_grab_01", "--arctic-cropped",
             "--arctic-trim", "50"),
            _ARCTIC,
        ),
        (("preprocess", "src", "--hamer-checkpoint", "ckpt", *_H2O_FLAGS, *_ARCTIC_FLAGS, "--arctic-cropped"), {**_H2O, **_ARCTIC}),
    ],
)
def test_hand4dgs_commands_take_the_dataset_options_by_their_flags(args, values):
    from hand4dgs_ns.cli.main import Commands

    _assert_options(tyro.cli(Commands, args=[*args, *_COMMON_FLAGS]).dataset, values)
