"""``hand4dgs tto``'s configuration: the vertex loss's share it keeps from the trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hand4dgs_ns.cli.tto import TTO, tto_config, vertex_share
from hand4dgs_ns.inference.run import TrainedRun
from hand4dgs_ns.method_configs import hand4dgs_generalized_trainer, hand4dgs_trainer


def _run(config, step: int) -> TrainedRun:
    return TrainedRun(Path("run/config.yml"), config, Path(f"run/nerfstudio_models/step-{step:09d}.ckpt"))


def _tto(run: TrainedRun, tmp_path, **options):
    return tto_config(run, TTO(load_config=run.config_path, data=tmp_path / "clip", output_dir=tmp_path / "out", **options), "cpu")


def test_tto_keeps_the_share_the_run_ended_with_and_a_later_tto_reads_it_back(tmp_path):
    generalised = _run(hand4dgs_generalized_trainer(), 29999)
    assert vertex_share(generalised) == pytest.approx(0.1)  # the generalised method's floor
    first = _tto(generalised, tmp_path)
    model = first.pipeline.model
    assert model.vertex_loss_weight == generalised.config.pipeline.model.vertex_loss_weight  # the weight itself unscaled
    assert vertex_share(_run(first, 0)) == vertex_share(_run(first, 499)) == pytest.approx(0.1)  # fixed from step 0
    assert all(first.optimizers[n]["optimizer"].lr == g["optimizer"].lr for n, g in generalised.config.optimizers.items())
    assert all(g["scheduler"].max_steps == 500 for g in first.optimizers.values())

    # A TTO of a TTO run keeps its share, and --vertex-weight means the same share whatever came before.
    assert vertex_share(_run(_tto(_run(first, 499), tmp_path), 499)) == pytest.approx(0.1)
    assert vertex_share(_run(_tto(_run(first, 499), tmp_path, vertex_weight=1.0), 0)) == 1.0


def test_a_per_video_run_ends_with_no_vertex_share(tmp_path):
    per_video = _run(hand4dgs_trainer(), 29999)
    assert vertex_share(per_video) < 1e-3
    assert vertex_share(_run(_tto(per_video, tmp_path, vertex_weight=0.1), 0)) == pytest.approx(0.1)


def test_a_negative_vertex_weight_is_one_sentence(tmp_path):
    from hand4dgs_ns.errors import Hand4DGSError

    with pytest.raises(Hand4DGSError, match="--vertex-weight is -1.0"):
        TTO(load_config=tmp_path / "config.yml", data=tmp_path, vertex_weight=-1.0).main()
