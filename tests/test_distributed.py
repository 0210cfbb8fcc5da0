"""Generalised training in two processes through DDP, on the CPU (gloo): each rank draws from its
own videos, the caches are built once, gradients are averaged, only rank 0 writes, and a
checkpoint resumes. nerfstudio's own launcher needs CUDA, so the ranks are started here the way
it starts them, and the pipeline is built per rank as its Trainer does."""

from __future__ import annotations

import dataclasses
import json
import os
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from hand4dgs_ns.dataparsers.splits import SPLIT_FILE
from hand4dgs_ns.distributed import MULTICAST_OFF, keep_nvlink_multicast_off, rank_share
from hand4dgs_ns.method_configs import hand4dgs_generalized_trainer

TRAIN = [f"train_{i:03d}" for i in range(4)]
WORLD = 2


@pytest.fixture(scope="module")
def video_set(tmp_path_factory) -> Path:
    """Four training videos and one held-out one, named in splits.json."""
    from conftest import write_random_sequence

    data = tmp_path_factory.mktemp("distributed") / "set"
    for i, name in enumerate([*TRAIN, "test_000"]):
        write_random_sequence(data / name, num_frames=5, seed=i)
    (data / SPLIT_FILE).write_text(json.dumps({"train": TRAIN, "test": ["test_000"]}))
    return data


def _config(data: Path, cache: Path):
    config = hand4dgs_generalized_trainer(10)
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.max_num_iterations = 2
    config.steps_per_eval_batch = config.steps_per_eval_image = 1
    config.steps_per_save = 1000
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.cache_dir = cache
    config.pipeline.datamanager.frames_per_step = 2
    config.pipeline.model.gaussians_per_face = 1
    config.pipeline.model.image_loss_from = 1  # step 0: vertex loss only (appearance unused); then images too
    config.pipeline.model.background = "black"  # the same loss when a batch is run twice
    config.set_timestamp()
    return config


def test_rank_share_deals_videos_then_frames():
    lengths = {0: 5, 3: 4, 7: 6}
    assert [list(rank_share(lengths, 2, r)) for r in range(2)] == [[0, 7], [3]]
    assert all(len(p) == n for p, n in zip(rank_share(lengths, 2, 0).values(), (5, 6)))
    # Fewer videos than ranks: every rank gets every video, each a disjoint part of its frames.
    shares = [rank_share({0: 5, 1: 2}, 3, r) for r in range(3)]
    assert [{s: p.tolist() for s, p in share.items()} for share in shares] == [
        {0: [0, 3], 1: [0]}, {0: [1, 4], 1: [1]}, {0: [2]},
    ]
    assert rank_share(lengths, 1, 0).keys() == lengths.keys()


def test_one_process_draws_the_batches_it_always_drew(video_set, tmp_path):
    config = _config(video_set, tmp_path / "cache")
    config.pipeline.datamanager.videos_per_step = 1  # every frame of a step from one video
    datamanager = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    # The sampler before ranks existed: a video weighted by its training frames, then a random subset.
    generator = torch.Generator().manual_seed(config.pipeline.datamanager.seed)
    for step in range(8):
        sequences = list(datamanager._train)
        counts = torch.tensor([len(datamanager._train[s].frames) for s in sequences], dtype=torch.float)
        s = sequences[int(torch.multinomial(counts, 1, generator=generator))]
        frames = datamanager._train[s].frames
        expected = frames[torch.randperm(len(frames), generator=generator)[:2]]
        _, batch = datamanager.next_train(step)
        assert batch["sequence_index"].unique().tolist() == [s]
        assert torch.equal(batch["frame_index"], expected)



def test_a_step_can_mix_videos_and_trains_on_them(video_set, tmp_path):
    """--pipeline.datamanager.videos-per-step 2: each step holds frames of two training videos,
    each frame with its own video's pixels and targets, and the model trains on such batches."""
    config = _config(video_set, tmp_path / "cache")
    config.pipeline.datamanager.frames_per_step = 4
    config.pipeline.datamanager.videos_per_step = 2
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    datamanager = trainer.pipeline.datamanager
    for step in range(6):
        _, batch = datamanager.next_train(step)
        sequences = batch["sequence_index"].tolist()
        assert len(set(sequences)) == 2 and sorted(sequences.count(s) for s in set(sequences)) == [2, 2]
        assert not set(sequences) & {s for s in datamanager._eval}
        for row, (s, f) in enumerate(zip(sequences, batch["frame_index"].tolist())):
            images = datamanager._train[s].images
            np.testing.assert_array_equal((batch["image"][row] * 255).round().byte().numpy(), images[f])
            position = int(torch.nonzero(datamanager._train[s].frames == f))
            assert torch.equal(batch["bbox"][row], datamanager._train[s].targets["bbox"][position])
    trainer.train()
    losses = trainer.pipeline.get_train_loss_dict(config.max_num_iterations)[1]
    assert losses and all(torch.isfinite(v) for v in losses.values())
    # More videos asked for than a step has frames: one frame from each of as many videos as frames.
    datamanager.config.frames_per_step, datamanager.config.videos_per_step = 2, 4
    with mock.patch.object(datamanager, "_batch", wraps=datamanager._batch) as batch_of:
        for step in range(6):
            sequences = datamanager.next_train(step)[1]["sequence_index"].tolist()
            assert len(sequences) == 2 and len(set(sequences)) == 2
    picks = [[len(pick) for _, _, pick in call.args[1]] for call in batch_of.call_args_list]
    assert picks == [[1, 1]] * 6  # two videos drawn, none of them without a frame
    # A video whose targets differ (here: no ground truth) is never batched with the others.
    lone = next(iter(datamanager._train))
    cached = datamanager._train[lone]
    datamanager._train[lone] = dataclasses.replace(cached, targets={k: v for k, v in cached.targets.items() if k != "gt_joints"})
    for step in range(40):
        _, batch = datamanager.next_train(step)
        sequences = set(batch["sequence_index"].tolist())
        assert lone not in sequences or sequences == {lone}


def _gather(value):
    out = [None] * WORLD
    dist.all_gather_object(out, value)
    return out


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


class _CpuDDP(DistributedDataParallel):
    """DDP as nerfstudio's pipeline makes it, less ``device_ids=[local_rank]`` (for GPU modules
    only); the options it passes (find_unused_parameters) are kept for the test to check."""

    options: dict = {}

    def __init__(self, module, device_ids=None, **options):
        _CpuDDP.options = options
        super().__init__(module, **options)


def _rank(rank: int, config, rendezvous: str, out_root: Path) -> None:
    from nerfstudio.engine.callbacks import TrainingCallbackLocation
    from nerfstudio.pipelines import base_pipeline

    from hand4dgs_ns.features.cache import FeatureCache
    from hand4dgs_ns.inference.run import TrainedRun, network_weights

    torch.set_num_threads(1)  # two ranks on a machine of few cores
    # A rank stuck in a collective fails after this long (and the launcher ends the other).
    dist.init_process_group("gloo", init_method=rendezvous, world_size=WORLD, rank=rank, timeout=timedelta(minutes=3))
    base_pipeline.DDP = _CpuDDP
    builds, build = [], FeatureCache._build

    def counted_build(self, key, *args, **kwargs):
        builds.append(key.content)
        return build(self, key, *args, **kwargs)

    FeatureCache._build = counted_build

    config.output_dir = out_root / f"rank{rank}"  # each rank its own folder: only rank 0's may fill
    trainer = config.setup(local_rank=rank, world_size=WORLD)
    trainer.setup()
    pipeline, model = trainer.pipeline, trainer.pipeline.model
    ddp_model = pipeline._model
    assert isinstance(ddp_model, DistributedDataParallel) and _CpuDDP.options["find_unused_parameters"] is True
    assert not model.config.cuda_graphs, "cuda-graphs must be off in several processes"
    built = _gather(builds)
    assert built[0] and not any(built[1:]), f"rank 0 alone builds the fresh cache: {built}"

    # (1) Each rank draws from its own videos: disjoint, together all training videos.
    names = [s.name for s in pipeline.datamanager.hands.sequences]
    seen = {names[s] for _ in range(8) for s in pipeline.datamanager.next_train(0)[1]["sequence_index"].tolist()}
    shares = _gather(seen)
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(TRAIN), shares
    assert shares[rank] == set(TRAIN[rank::WORLD])

    # (2) DDP's gradients are the mean of the ranks' own, for every trained parameter in use (in the
    # vertex phase the appearance is unused, the matte excepted, which trains from its own loss; and
    # nerfstudio's Model holds a parameter it never uses: without find_unused_parameters DDP would
    # stop); after the step the ranks are equal.
    params = [p for group in model.get_param_groups().values() for p in group]
    matte = {id(p) for p in model.network.matte.parameters()}  # the generalised default has one
    appearance = {id(p) for p in model.network.appearance_parameters()} - matte
    for step in (0, 1):  # vertex phase, then the image phase
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        camera, batch = pipeline.datamanager.next_train(step)
        grads, losses = [], []
        for sync in (False, True):  # each rank's own gradient, then DDP's
            trainer.optimizers.zero_grad_all()
            with nullcontext() if sync else ddp_model.no_sync():
                loss = sum(model.get_loss_dict(ddp_model(camera), batch).values())
                loss.backward()
            grads.append(_flat(p.grad if p.grad is not None else torch.zeros_like(p) for p in params))
            losses.append(float(loss))
        assert [p.grad is not None for p in params] == [step == 1 or id(p) not in appearance for p in params]
        own = _gather(grads[0])
        torch.testing.assert_close(grads[1], (own[0] + own[1]) / 2)
        assert not torch.allclose(own[0], own[1]), "the ranks saw different data"
        assert losses[0] == losses[1] and len(set(_gather(losses[1]))) == WORLD

        before = _flat(params).clone()
        trainer.optimizers.optimizer_step_all()
        after = _gather(_flat(params))
        assert torch.equal(after[0], after[1]), f"step {step}: the ranks' weights differ"
        assert not torch.equal(after[rank], before)

    # (3) nerfstudio's training loop: only rank 0 writes (checkpoint, logs, dataparser transform).
    trainer.train()
    weights = _gather(_flat(params))
    assert torch.equal(weights[0], weights[1])
    dist.barrier()
    folders = [out_root / f"rank{r}" for r in range(WORLD)]
    assert not folders[1].exists(), list(folders[1].rglob("*"))
    files = {p.name for p in folders[0].rglob("*") if p.is_file()}
    assert "dataparser_transforms.json" in files and any(f.startswith("events.out.tfevents") for f in files), files
    (checkpoint,) = folders[0].rglob("step-*.ckpt")

    # Resuming: both ranks load rank 0's checkpoint (saved under single-process names), train on equal.
    state = torch.load(checkpoint, map_location="cpu")
    assert not any(".module." in key for key in state["pipeline"])
    run = TrainedRun(config_path=checkpoint.parent.parent / "config.yml", config=config, checkpoint=checkpoint)
    assert network_weights(run).keys() == model.network.state_dict().keys()
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p))
    trainer.config.load_dir = checkpoint.parent
    trainer._load_checkpoint()
    assert trainer._start_step == state["step"] + 1
    assert torch.equal(_flat(params), weights[rank])
    trainer.train_iteration(trainer._start_step)
    resumed = _gather(_flat(params))
    assert torch.equal(resumed[0], resumed[1]) and not torch.equal(resumed[rank], weights[rank])
    dist.destroy_process_group()


def test_nvlink_multicast_stays_off_unless_the_user_says_otherwise(monkeypatch):
    for name in MULTICAST_OFF:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NVSHMEM_DISABLE_NVLS", "0")
    keep_nvlink_multicast_off()
    assert {name: os.environ[name] for name in MULTICAST_OFF} == {**MULTICAST_OFF, "NVSHMEM_DISABLE_NVLS": "0"}


def test_two_ranks_share_videos_average_gradients_and_only_rank_0_writes(video_set, tmp_path, monkeypatch):
    monkeypatch.setenv("HAND4DGS_CACHE_DIR", str(tmp_path / "user-cache"))
    config = _config(video_set, tmp_path / "cache")
    mp.spawn(_rank, args=(config, f"file://{tmp_path / 'rendezvous'}", tmp_path / "out"), nprocs=WORLD, join=True)
