"""``hand4dgs preprocess``: a missing HaMeR checkpoint or a missing ``hamer`` package ends with
one sentence and exit status 1, before any pseudo-label file is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from hand4dgs_ns.cli.main import entrypoint

from fake_mano import write_fake_mano_dir
from h2o_fixture import write_h2o_fixture


@pytest.fixture
def h2o(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    write_fake_mano_dir(tmp_path / "mano", monkeypatch)
    root = write_h2o_fixture(tmp_path / "h2o", tmp_path / "mano", num_frames=2)
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "400")  # one sentence per line in captured output
    return {"root": root, "mano": tmp_path / "mano", "hamer_dir": root / "subject4" / "h1" / "0" / "cam4" / "hamer"}


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    """Runs ``hand4dgs <args>`` through the console-script entry point; returns the exit status."""
    monkeypatch.setattr(sys, "argv", ["hand4dgs", *map(str, args)])
    try:
        entrypoint()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_missing_checkpoint_is_one_sentence_and_status_1(h2o, tmp_path, monkeypatch, capsys) -> None:
    checkpoint = tmp_path / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"
    assert run_cli(monkeypatch, "preprocess", h2o["root"], "--hamer-checkpoint", checkpoint, "--mano-dir", h2o["mano"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        f"error: HaMeR checkpoint {checkpoint} does not exist: download HaMeR's checkpoint "
        "(https://github.com/geopavlakos/hamer) and pass its path with --hamer-checkpoint."
    )
    assert not h2o["hamer_dir"].exists()


@pytest.mark.skipif(importlib.util.find_spec("hamer") is not None, reason="the hamer package is installed here")
def test_a_missing_hamer_package_is_one_sentence_and_status_1(h2o, tmp_path, monkeypatch, capsys) -> None:
    checkpoint = tmp_path / "hamer.ckpt"
    checkpoint.write_bytes(b"not read: HaMeR is needed first")
    args = ["preprocess", h2o["root"], "--hamer-checkpoint", checkpoint, "--mano-dir", h2o["mano"], "--device", "cpu"]
    assert run_cli(monkeypatch, *args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "the hamer package does not import" in line
    assert "install HaMeR (https://github.com/geopavlakos/hamer)" in line
    assert str(h2o["hamer_dir"]) in line  # the other way: pseudo-label files imported there
    assert not h2o["hamer_dir"].exists() or not any(h2o["hamer_dir"].iterdir())


def test_a_sequence_folder_is_refused_with_the_command_to_train_on_it(tiny_sequence, tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "hamer.ckpt"
    checkpoint.write_bytes(b"x")
    monkeypatch.setenv("COLUMNS", "400")
    assert run_cli(monkeypatch, "preprocess", tiny_sequence, "--hamer-checkpoint", checkpoint) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{tiny_sequence} is in the project's sequence format" in line
    assert f"ns-train hand4dgs --data {tiny_sequence}" in line
