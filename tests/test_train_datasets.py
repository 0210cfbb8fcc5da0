"""ns-train hand4dgs straight on H2O and ARCTIC folders (with HaMeR files), then ns-eval; the dataparser on them.

The datasets are the tiny on-disk fixtures of ``h2o_fixture`` and ``arctic_fixture`` with fake
MANO files; their HaMeR files are written by ``hamer_fixture`` for the videos as the readers
read them. Training settings are the smallest that exercise every step (see
``test_train_end_to_end``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from arctic_fixture import write_arctic_fixture
from fake_mano import write_fake_mano_dir
from h2o_fixture import write_h2o_fixture
from hamer_fixture import write_hamer_fixture
from PIL import Image

from hand4dgs_ns.data.sequence_format import SequenceWriter
from hand4dgs_ns.dataparsers.hand_metadata import hand_metadata
from hand4dgs_ns.dataparsers.sequence_dataparser import (
    ArcticDataParserConfig,
    H2ODataParserConfig,
    SequenceDataParserConfig,
)
from hand4dgs_ns.datasets.detect import (
    MANO_DIR_ENV,
    ArcticOptions,
    DatasetOptions,
    H2OOptions,
    load_sequences,
    read_dataset_sequences,
)
from hand4dgs_ns.errors import Hand4DGSError

from ns_commands import BIN, FAST

ARCTIC_TRIM = 2
METRICS = ("psnr", "ssim", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm", "pseudo_mpjpe_mm", "pseudo_ra_mpjpe_mm", "pseudo_acc_err_mm")


def _run(args: list[str], env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if ok:
        assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


class Datasets:
    """The fixture folders and the environment every command runs in."""

    def __init__(self, root: Path):
        self.root = root
        self.mano = root / "mano"
        self.cache = root / "cache"
        self.h2o = root / "h2o"
        self.arctic = root / "arctic"
        # No MANO folder in the environment unless a test puts it there.
        self.env = {k: v for k, v in os.environ.items() if k != MANO_DIR_ENV}
        self.env.update(HAND4DGS_CACHE_DIR=str(self.cache), COLUMNS="200")

    def options(self, options_class: type[DatasetOptions] = DatasetOptions) -> DatasetOptions:
        return options_class(mano_dir=self.mano, arctic_trim=ARCTIC_TRIM, cache_dir=self.cache)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Datasets:
    """One H2O video (subject4/h1/0, 6 frames) and one ARCTIC video (s05/box_grab_01, 6 frames kept), with HaMeR files."""
    data = Datasets(tmp_path_factory.mktemp("datasets"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        write_fake_mano_dir(data.mano, monkeypatch)
    write_h2o_fixture(data.h2o, data.mano, num_frames=6, width=64, height=48)
    # 200x140 (the fixture's default): smaller frames leave the hands' boxes too small to use.
    write_arctic_fixture(data.arctic, num_annotated=10, width=200, height=140)
    for folder in (data.h2o, data.arctic):
        for video in read_dataset_sequences(folder, data.options()):
            write_hamer_fixture(video, data.mano)
    return data


def _train(datasets: Datasets, name: str, args: list[str], env: dict) -> Path:
    out = datasets.root / f"out_{name}"
    _run([str(BIN / "ns-train"), "hand4dgs", "--output-dir", str(out), *FAST, *args], env)
    configs = sorted(out.rglob("config.yml"))
    assert len(configs) == 1
    return configs[0]


def _evaluate(config: Path, env: dict, out: Path) -> dict:
    _run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(out)], env)
    results = json.loads(out.read_text())["results"]
    for key in METRICS:
        assert key in results and np.isfinite(results[key]), key
    assert results["mpjpe_mm"] > 0 and 0 < results["ssim"] <= 1
    return results


# ---- dataparser (in process) ---------------------------------------------------------------


def test_dataparser_reads_h2o_with_ground_truth_and_novel_views(datasets, tmp_path):
    outputs = SequenceDataParserConfig(data=datasets.h2o, dataset=datasets.options()).setup().get_dataparser_outputs("train")
    meta = hand_metadata(outputs.metadata)
    assert [s.name for s in meta.sequences] == ["subject4_h1_0"]
    sequence = meta.sequences[0]
    assert sequence.gt_joints is not None and sequence.pseudo_verts is not None and sequence.mask_paths is not None
    assert sequence.pseudo_verts.shape[-2] == 778
    assert [v.name for v in meta.views] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(v.sequence_index == 0 and len(v.image_filenames) == 6 for v in meta.views)
    assert all(v.mask_filenames is not None and len(v.mask_filenames) == 6 for v in meta.views)  # drawn for novel-view metrics
    # frames 1-5 train (eval-interval 8 holds out frame 0)
    assert meta.frame_index.tolist() == [1, 2, 3, 4, 5]


def _as_sequence_folder(sequence, out: Path) -> Path:
    """Writes a loaded dataset video in the sequence format (frames, hands, views) for comparison."""
    with SequenceWriter(out) as writer:
        for i, path in enumerate(sequence.image_paths):
            writer.add_frame(np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(sequence.mask_paths[i])))
            for name, view in sequence.views.items():
                writer.add_view_frame(name, np.asarray(Image.open(view.image_paths[i]).convert("RGB")))
        writer.finish(sequence.cameras, sequence.hands, {name: view.cameras for name, view in sequence.views.items()})
    return out


@pytest.mark.parametrize("dataset", ["h2o", "arctic"])
def test_dataset_views_are_novel_views_exactly_as_sequence_views(datasets, tmp_path, dataset):
    folder = getattr(datasets, dataset)
    sequence, = load_sequences(folder, datasets.options())
    copy = _as_sequence_folder(sequence, tmp_path / sequence.name)
    from_dataset = hand_metadata(
        SequenceDataParserConfig(data=folder, eval_mode="all", dataset=datasets.options()).setup().get_dataparser_outputs("train").metadata
    ).views
    from_copy = hand_metadata(SequenceDataParserConfig(data=copy, eval_mode="all").setup().get_dataparser_outputs("train").metadata).views
    assert [v.name for v in from_dataset] == [v.name for v in from_copy] == sorted(sequence.views)
    assert len(from_dataset) == (4 if dataset == "h2o" else 8)
    for a, b in zip(from_dataset, from_copy):
        assert a.sequence_index == b.sequence_index == 0
        assert a.image_filenames == tuple(sequence.views[a.name].image_paths)
        for key in ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height", "times"):
            torch.testing.assert_close(getattr(a.cameras, key), getattr(b.cameras, key), msg=key)
        for key in ("frame_index", "sequence_index"):
            torch.testing.assert_close(a.cameras.metadata[key], b.cameras.metadata[key], msg=key)


def test_dataset_dataparsers_accept_only_their_dataset(datasets):
    arctic = ArcticDataParserConfig(data=datasets.arctic, dataset=datasets.options(ArcticOptions)).setup().get_dataparser_outputs("train")
    assert [s.name for s in hand_metadata(arctic.metadata).sequences] == ["s05_box_grab_01"]
    with pytest.raises(Hand4DGSError, match=r"not an H2O folder"):
        H2ODataParserConfig(data=datasets.arctic, dataset=datasets.options(H2OOptions)).setup().get_dataparser_outputs("train")
    with pytest.raises(Hand4DGSError, match=r"not an ARCTIC folder"):
        ArcticDataParserConfig(data=datasets.h2o, dataset=datasets.options(ArcticOptions)).setup().get_dataparser_outputs("train")


# ---- ns-train and ns-eval ------------------------------------------------------------------


def test_ns_train_and_eval_on_h2o(datasets, tmp_path):
    """The plain command, the MANO folder from the environment, the layout detected."""
    env = dict(datasets.env, **{MANO_DIR_ENV: str(datasets.mano)})
    config = _train(datasets, "h2o", ["--data", str(datasets.h2o)], env)
    assert "H2ODataParserConfig" not in config.read_text()
    results = _evaluate(config, env, tmp_path / "eval.json")
    # The static views are scored (the fixture's frames are noise, so SSIM may fall below 0).
    assert results["nvs_num_images"] > 0 and -1 <= results["nvs_ssim"] <= 1 and np.isfinite(results["nvs_psnr"])


def test_ns_train_and_eval_on_arctic(datasets, tmp_path):
    """The arctic dataparser subcommand with its options; frames rendered at half size."""
    args = ["--data", str(datasets.arctic), "--pipeline.datamanager.image-scale", "0.5",
            "arctic", "--mano-dir", str(datasets.mano), "--arctic-trim", str(ARCTIC_TRIM)]
    config = _train(datasets, "arctic", args, datasets.env)
    assert "ArcticDataParserConfig" in config.read_text()
    _evaluate(config, datasets.env, tmp_path / "eval.json")


def test_ns_train_without_hamer_files_is_one_sentence(tmp_path):
    with pytest.MonkeyPatch.context() as monkeypatch:
        write_fake_mano_dir(tmp_path / "mano", monkeypatch)
    h2o = write_h2o_fixture(tmp_path / "h2o", tmp_path / "mano", num_frames=3)
    env = {k: v for k, v in os.environ.items() if k != MANO_DIR_ENV}
    env.update(HAND4DGS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    out = _run(
        [str(BIN / "ns-train"), "hand4dgs", "--data", str(h2o), "--output-dir", str(tmp_path / "out"), *FAST,
         "hand4dgs-sequence", "--mano-dir", str(tmp_path / "mano")],
        env,
        ok=False,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    hamer_dir = h2o / "subject4" / "h1" / "0" / "cam4" / "hamer"
    assert last.startswith(f"error: {hamer_dir} does not exist") and "hand4dgs preprocess" in last, last
