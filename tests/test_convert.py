"""``hand4dgs convert``: H2O and ARCTIC videos written out as sequence folders that read back
exactly as training reads the datasets; refusals; nothing half-written after a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hand4dgs_ns.cli.main import entrypoint
from hand4dgs_ns.data.sequence_format import Sequence, SequenceCameras, SequenceWriter, read_sequence
from hand4dgs_ns.datasets.convert import convert_dataset, write_sequence_folder
from hand4dgs_ns.datasets.detect import DatasetOptions, load_sequences, read_dataset_sequences
from hand4dgs_ns.errors import Hand4DGSError

from arctic_fixture import write_arctic_fixture
from fake_mano import write_fake_mano_dir
from h2o_fixture import write_h2o_fixture
from hamer_fixture import write_hamer_fixture

ARCTIC_TRIM = 2  # the fixture annotates 10 frames; the paper's 100 would leave none


def _with_hamer_files(src: Path, options: DatasetOptions) -> Path:
    for video in read_dataset_sequences(src, options):
        write_hamer_fixture(video, options.mano_dir)
    return src


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """MANO files, an H2O root with two videos and an ARCTIC root with one, each with HaMeR files."""
    tmp = tmp_path_factory.mktemp("convert")
    with pytest.MonkeyPatch.context() as monkeypatch:
        write_fake_mano_dir(tmp / "mano", monkeypatch)
    h2o_options = DatasetOptions(mano_dir=tmp / "mano", cache_dir=tmp / "cache")
    arctic_options = DatasetOptions(mano_dir=tmp / "mano", cache_dir=tmp / "cache", arctic_trim=ARCTIC_TRIM)
    h2o = _with_hamer_files(write_h2o_fixture(tmp / "h2o", tmp / "mano", sequences=(0, 1)), h2o_options)
    arctic = _with_hamer_files(write_arctic_fixture(tmp / "arctic"), arctic_options)
    return {"tmp": tmp, "mano": tmp / "mano", "cache": tmp / "cache", "h2o": h2o, "arctic": arctic,
            "h2o_options": h2o_options, "arctic_options": arctic_options}


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    """Runs ``hand4dgs <args>`` through the console-script entry point; returns the exit status."""
    monkeypatch.setattr(sys, "argv", ["hand4dgs", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "400")  # one sentence per line in captured output
    try:
        entrypoint()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def common_args(data: dict) -> list[object]:
    return ["--mano-dir", data["mano"], "--cache-dir", data["cache"]]


def pixels(path: Path) -> np.ndarray:
    """A frame as RGB, or a mask's stored labels."""
    with Image.open(path) as image:
        return np.asarray(image if image.mode in ("L", "P") else image.convert("RGB"))


def assert_same_cameras(written: SequenceCameras, expected: SequenceCameras) -> None:
    np.testing.assert_array_equal(written.K, np.asarray(expected.K, np.float32))
    np.testing.assert_array_equal(written.c2w, np.asarray(expected.c2w, np.float32))
    assert (written.fps, written.width, written.height) == (expected.fps, expected.width, expected.height)


def assert_same_sequence(written: Sequence, expected: Sequence) -> None:
    """Everything training reads: cameras, every hands array, frame and mask pixels, views."""
    assert written.name == expected.name and written.num_frames == expected.num_frames > 0
    assert_same_cameras(written.cameras, expected.cameras)
    for key in ("bbox", "valid", "pseudo_joints", "pseudo_verts", "gt_joints", "gt_valid"):
        value = getattr(expected.hands, key)
        assert value is not None, key
        np.testing.assert_array_equal(getattr(written.hands, key), value, err_msg=key)
    for got, want in zip(written.image_paths, expected.image_paths, strict=True):
        assert got.suffix == ".png"
        np.testing.assert_array_equal(pixels(got), pixels(want))
    assert written.mask_paths is not None and expected.mask_paths is not None
    labels = set()
    for got, want in zip(written.mask_paths, expected.mask_paths, strict=True):
        np.testing.assert_array_equal(pixels(got), pixels(want))
        labels |= set(np.unique(pixels(got)).tolist())
    assert labels == {0, 1, 2}  # the masks show both hands: the comparison is not of empty images
    assert sorted(written.views) == sorted(expected.views) and written.views
    for name, view in expected.views.items():
        assert_same_cameras(written.views[name].cameras, view.cameras)
        for got, want in zip(written.views[name].image_paths, view.image_paths, strict=True):
            np.testing.assert_array_equal(pixels(got), pixels(want))
        assert view.mask_paths is not None and written.views[name].mask_paths is not None  # novel-view masks go along
        for got, want in zip(written.views[name].mask_paths, view.mask_paths, strict=True):
            np.testing.assert_array_equal(pixels(got), pixels(want))


def no_hidden_entries(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.rglob("*"))


def test_h2o_converts_and_reads_back_as_training_reads_the_dataset(data, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "h2o_seqs"
    assert run_cli(monkeypatch, "convert", "h2o", data["h2o"], out, *common_args(data)) == 0
    expected = load_sequences(data["h2o"], data["h2o_options"])
    assert [s.name for s in expected] == ["subject4_h1_0", "subject4_h1_1"]
    assert sorted(p.name for p in out.iterdir()) == ["subject4_h1_0", "subject4_h1_1"]
    for sequence in expected:
        written = read_sequence(out / sequence.name, check_frames=True)
        assert sorted(written.views) == ["cam0", "cam1", "cam2", "cam3"]
        assert_same_sequence(written, sequence)
    printed = capsys.readouterr().out
    assert str(out) in printed and f"ns-train hand4dgs --data {out}\n" in printed
    assert "Wrote 2 sequence folders (8 frames)" in printed
    # Drawn masks left unrefined: the printed command trains with the light silhouette loss.
    args = ["convert", "h2o", data["h2o"], tmp_path / "drawn", *common_args(data), "--no-refine-masks"]
    assert run_cli(monkeypatch, *args) == 0
    printed = capsys.readouterr().out
    assert f"ns-train hand4dgs --data {tmp_path / 'drawn'} --pipeline.model.silhouette-loss-weight 1" in printed


def test_arctic_converts_and_reads_back_as_training_reads_the_dataset(data, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "arctic_seqs"
    args = ["convert", "arctic", data["arctic"], out, *common_args(data), "--arctic-trim", ARCTIC_TRIM, "--arctic-subjects", "s05"]
    assert run_cli(monkeypatch, *args) == 0
    (expected,) = load_sequences(data["arctic"], data["arctic_options"])
    assert expected.num_frames == 10 - 2 * ARCTIC_TRIM
    written = read_sequence(out / "s05_box_grab_01", check_frames=True)
    assert len(written.views) == 8
    assert_same_sequence(written, expected)
    assert f"ns-train hand4dgs --data {out}" in capsys.readouterr().out


def test_an_existing_sequence_is_not_replaced_without_overwrite(data, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "seqs"
    args = ["convert", "h2o", data["h2o"] / "subject4" / "h1" / "0", out, *common_args(data)]
    assert run_cli(monkeypatch, *args) == 0
    hands = out / "subject4_h1_0" / "hands.npz"
    before = hands.stat().st_mtime_ns
    capsys.readouterr()

    assert run_cli(monkeypatch, *args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{out / 'subject4_h1_0'}: already exists" in err and "--overwrite" in err
    assert hands.stat().st_mtime_ns == before

    assert run_cli(monkeypatch, *args, "--overwrite") == 0
    assert hands.stat().st_mtime_ns != before
    assert read_sequence(out / "subject4_h1_0").num_frames == 4 and no_hidden_entries(out)


def test_every_destination_is_checked_before_anything_is_written(data, tmp_path) -> None:
    out = tmp_path / "seqs"
    (out / "subject4_h1_1").mkdir(parents=True)  # the second video's destination is taken
    with pytest.raises(Hand4DGSError, match="subject4_h1_1: already exists"):
        convert_dataset(data["h2o"], out, data["h2o_options"])
    assert sorted(p.name for p in out.iterdir()) == ["subject4_h1_1"]


@pytest.mark.parametrize(
    ("command", "source", "sentence"),
    [
        ("arctic", "h2o", "is an H2O folder, not ARCTIC: convert it with `hand4dgs convert h2o"),
        ("h2o", "arctic", "is an ARCTIC folder, not H2O: convert it with `hand4dgs convert arctic"),
    ],
)
def test_a_source_of_another_dataset_is_refused(data, tmp_path, monkeypatch, capsys, command, source, sentence) -> None:
    out = tmp_path / "seqs"
    assert run_cli(monkeypatch, "convert", command, data[source], out, *common_args(data)) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(data[source]) in err and sentence in err
    assert not out.exists()


def test_a_sequence_folder_source_is_refused_with_the_command_to_train_on_it(data, tmp_path, monkeypatch, capsys):
    converted = tmp_path / "seqs"
    convert_dataset(data["h2o"] / "subject4" / "h1" / "0", converted, data["h2o_options"])
    assert run_cli(monkeypatch, "convert", "h2o", converted, tmp_path / "again", *common_args(data)) == 1
    err = capsys.readouterr().err
    assert "already in the project's sequence format" in err and f"ns-train hand4dgs --data {converted}" in err
    assert not (tmp_path / "again").exists()


def test_the_installed_command_refuses_another_dataset_with_one_sentence(data, tmp_path) -> None:
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="400")
    hand4dgs = Path(sys.executable).parent / "hand4dgs"
    command = [str(hand4dgs), "convert", "arctic", str(data["h2o"]), str(tmp_path / "o")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {data['h2o']} is an H2O folder, not ARCTIC: convert it with "
        f"`hand4dgs convert h2o {data['h2o']} ...` or point to an ARCTIC folder."
    ]
    assert not (tmp_path / "o").exists()


def test_a_failed_conversion_leaves_only_complete_sequences(data, tmp_path, monkeypatch, capsys) -> None:
    root = write_h2o_fixture(tmp_path / "h2o", data["mano"], sequences=(0, 1))
    options = DatasetOptions(mano_dir=data["mano"], cache_dir=tmp_path / "cache")
    _with_hamer_files(root, options)
    broken = root / "subject4" / "h1" / "1" / "cam4" / "rgb" / "000002.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated file: its header still reads
    out = tmp_path / "seqs"
    args = ["convert", "h2o", root, out, "--mano-dir", data["mano"], "--cache-dir", tmp_path / "cache"]
    # Refining the masks reads every frame before anything is written: the broken one ends it there.
    assert run_cli(monkeypatch, *args) == 1
    err = capsys.readouterr().err
    assert str(broken) in err and "Traceback" not in err
    assert not out.exists()
    # Without the refinement the frames are first decoded while writing: the first video is finished.
    assert run_cli(monkeypatch, *args, "--no-refine-masks") == 1
    err = capsys.readouterr().err
    assert str(broken) in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["subject4_h1_0"]
    assert read_sequence(out / "subject4_h1_0", check_frames=True).num_frames == 4
    assert no_hidden_entries(out)


def test_an_interrupted_overwrite_leaves_the_old_folder_untouched(data, tmp_path, monkeypatch, capsys) -> None:
    src = data["h2o"] / "subject4" / "h1" / "0"
    out = tmp_path / "seqs"
    args = ["convert", "h2o", src, out, *common_args(data), "--overwrite"]
    assert run_cli(monkeypatch, *args) == 0
    files = {p: p.read_bytes() for p in (out / "subject4_h1_0").rglob("*") if p.is_file()}

    calls = []
    add_view_frame = SequenceWriter.add_view_frame

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == 6:  # the second frame's views: frames are already on disk
            raise KeyboardInterrupt
        return add_view_frame(self, *a, **k)

    monkeypatch.setattr(SequenceWriter, "add_view_frame", interrupted)
    assert run_cli(monkeypatch, *args) == 130
    assert "interrupted" in capsys.readouterr().err and len(calls) == 6
    assert {p: p.read_bytes() for p in (out / "subject4_h1_0").rglob("*") if p.is_file()} == files
    assert sorted(p.name for p in out.iterdir()) == ["subject4_h1_0"] and no_hidden_entries(out)


def test_write_sequence_folder_round_trips_a_sequence_folder(tiny_sequence, tmp_path) -> None:
    original = read_sequence(tiny_sequence)
    copy = read_sequence(write_sequence_folder(original, tmp_path / "copy"))
    assert copy.hands.pseudo_verts is not None and copy.hands.pseudo_verts.shape[2] == 12
    np.testing.assert_array_equal(copy.hands.pseudo_verts, original.hands.pseudo_verts)
    for got, want in zip(copy.image_paths + copy.mask_paths, original.image_paths + original.mask_paths, strict=True):
        np.testing.assert_array_equal(pixels(got), pixels(want))
    with pytest.raises(Hand4DGSError, match="already exists"):
        write_sequence_folder(original, tmp_path / "copy")


def test_the_split_option_selects_the_videos(data, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "seqs"
    assert run_cli(monkeypatch, "convert", "h2o", data["h2o"], out, *common_args(data), "--split", "paper-train") == 1
    assert "paper split's train part" in capsys.readouterr().err and not out.exists()
    assert run_cli(monkeypatch, "convert", "h2o", data["h2o"], out, *common_args(data), "--split", "paper-test") == 0
    assert sorted(p.name for p in out.iterdir()) == ["subject4_h1_0", "subject4_h1_1"]
