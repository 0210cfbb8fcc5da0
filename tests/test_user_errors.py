"""A user error ends with one sentence naming the file, a non-zero exit and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_ns_train_with_a_missing_folder(tmp_path):
    missing = tmp_path / "no-such-clip"
    out = _run([str(BIN / "ns-train"), "hand4dgs", "--data", str(missing), "--machine.device-type", "cpu",
                "--vis", "tensorboard", "--output-dir", str(tmp_path / "out")], tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(missing) in last


def test_hand4dgs_synth_refuses_to_overwrite(tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("not a sequence")
    out = _run([str(BIN / "hand4dgs"), "synth", str(target), "--frames", "2", "--width", "64", "--height", "48"], tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and str(target) in out.stderr
    assert (target / "keep.txt").read_text() == "not a sequence" and sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_ns_train_refuses_a_clip_without_any_valid_hand(tmp_path):
    import numpy as np
    from conftest import write_random_sequence

    clip = write_random_sequence(tmp_path / "clip", num_frames=4)
    hands = dict(np.load(clip / "hands.npz"))
    hands["valid"] = np.zeros_like(hands["valid"])
    np.savez(clip / "hands.npz", **hands)
    out = _run([str(BIN / "ns-train"), "hand4dgs", "--data", str(clip), "--machine.device-type", "cpu",
                "--vis", "tensorboard", "--output-dir", str(tmp_path / "out")], tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {clip / 'hands.npz'}: marks no hand valid in any frame"), last
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.ckpt"))


def test_masks_of_another_size_are_resized_with_a_warning(tmp_path):
    from PIL import Image

    from conftest import write_random_sequence
    from ns_commands import FAST

    clip = write_random_sequence(tmp_path / "clip", num_frames=4, width=64, height=48)
    for mask in sorted((clip / "masks").glob("*.png")):
        with Image.open(mask) as im:
            im.resize((32, 24), Image.Resampling.NEAREST).save(mask)
    out = _run([str(BIN / "ns-train"), "hand4dgs", "--data", str(clip), "--output-dir", str(tmp_path / "out"), *FAST], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join((out.stdout + out.stderr).split())
    assert f"warning: masks of {clip} are 32x24, its frames 64x48: the masks were resized" in text, text[-3000:]


def test_operating_system_errors_name_the_file(tmp_path):
    long_ok = tmp_path / ("c" * 240)  # its temporary sibling's name is longer: it must still work
    out = _run([str(BIN / "hand4dgs"), "synth", str(long_ok), "--frames", "2", "--width", "64", "--height", "48"], tmp_path)
    assert out.returncode == 0 and long_ok.is_dir(), out.stderr[-2000:]
    too_long = tmp_path / ("c" * 300)
    out = _run([str(BIN / "hand4dgs"), "synth", str(too_long), "--frames", "2", "--width", "64", "--height", "48"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "has a name too long for the file system; choose a shorter name" in " ".join(out.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("cache")) == [long_ok.name], "nothing half-written"
