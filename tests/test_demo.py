"""hand4dgs demo end to end (a few steps): synthesis, training, evaluation, summary, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end(tmp_path):
    env = dict(os.environ, HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    out = subprocess.run(
        [str(BIN / "hand4dgs"), "demo", "--device", "cpu", "--steps", "12", "--output-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ns-train hand4dgs --data" in out.stdout
    for label in ("MPJPE (mm)", "RA-MPJPE (mm)", "Acc Err", "PSNR", "SSIM"):
        assert label in out.stdout
    results = json.loads(next((tmp_path / "runs").rglob("eval.json")).read_text())["results"]
    assert {"mpjpe_mm", "pseudo_mpjpe_mm", "acc_err_mm", "psnr", "ssim"} <= results.keys()
    assert 15.0 < results["pseudo_mpjpe_mm"] < 40.0  # the default clip's pseudo-label error
    assert (tmp_path / "cache" / "synthetic" / "default-v1" / "hands.npz").is_file()
