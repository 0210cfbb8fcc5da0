"""Training in several processes (``ns-train ... --machine.num-devices N``, nerfstudio's DDP launch).

nerfstudio starts one process per GPU and wraps the model in ``DistributedDataParallel``, which
averages the gradients of every step over the processes. What this package adds:

- each process (rank) trains on its own share of the training frames (:func:`rank_share`);
- the on-disk feature and frame caches are built by rank 0 alone, the others loading them once
  it is done (:func:`rank_zero_first`);
- the CUDA-graph training step is used in a single process only (:func:`no_cuda_graphs_under_ddp`);
- NVLink multicast stays off in the processes' collectives (:func:`keep_nvlink_multicast_off`).

Checkpoints, logs and evaluation results are written by rank 0 alone (nerfstudio's
``check_main_thread`` and :class:`hand4dgs_ns.trainer.Hand4DGSTrainer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Protocol, TypeVar

import torch
import torch.distributed as dist
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE

from hand4dgs_ns.errors import Hand4DGSError

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
"""Environment that keeps NVLink multicast (NCCL's NVLS, PyTorch's symmetric memory, NVSHMEM) off."""

CACHE_BUILD_TIMEOUT = timedelta(hours=24)
"""How long the other ranks wait for rank 0's cache build: a large set's first HaMeR tokens take hours."""


def keep_nvlink_multicast_off() -> None:
    """Sets :data:`MULTICAST_OFF` in this process's environment unless the user set them.

    Called when the method configs are imported, before nerfstudio starts its worker processes
    (which inherit the environment). On shared multi-GPU hosts, a program using NVLink multicast
    can leave the host's GPUs unusable for everyone; the plain all-reduce DDP needs works without it.
    """
    for name, value in MULTICAST_OFF.items():
        os.environ.setdefault(name, value)


def rank_share(frames_per_sequence: Mapping[int, int], world_size: int, rank: int) -> dict[int, torch.Tensor]:
    """The training frames rank ``rank`` of ``world_size`` draws from: sequence -> positions within
    that sequence's training frames (ascending).

    Sequences are dealt round-robin in sequence-index order, so the ranks see disjoint videos;
    with fewer sequences than ranks every rank gets every sequence and the frames are dealt
    round-robin instead. One rank gets everything.
    """
    sequences = sorted(frames_per_sequence)
    if len(sequences) >= world_size:
        return {s: torch.arange(frames_per_sequence[s]) for s in sequences[rank::world_size]}
    share = {s: torch.arange(rank, frames_per_sequence[s], world_size) for s in sequences}
    share = {s: positions for s, positions in share.items() if len(positions)}
    if not share:
        total = sum(frames_per_sequence.values())
        raise Hand4DGSError(
            f"The training split holds {total} frames, fewer than the {world_size} training processes: "
            "train on fewer GPUs (--machine.num-devices) or with more training frames."
        )
    return share


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Runs the block in rank 0 first and in the other ranks once rank 0 has finished it; in a
    single process (or without torch.distributed) it just runs the block.

    Used around building the on-disk caches: rank 0 builds any missing entry and the others then
    find it valid and load it. The wait goes through a CPU (gloo) group of its own with a long
    timeout, so a long first build does not run into the training group's timeout; if rank 0
    fails, nerfstudio's launcher ends the waiting ranks.
    """
    if comms.get_world_size() == 1:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=CACHE_BUILD_TIMEOUT)
    if comms.get_rank() != 0:
        dist.barrier(group=group)
    yield
    if comms.get_rank() == 0:
        dist.barrier(group=group)
    dist.destroy_process_group(group)


class _WithCudaGraphs(Protocol):
    cuda_graphs: bool


C = TypeVar("C", bound=_WithCudaGraphs)


def no_cuda_graphs_under_ddp(config: C) -> C:
    """``config`` as given in a single process; with several processes, a copy with ``cuda_graphs``
    off, said in one line (by rank 0): the recorded training step holds no DDP gradient all-reduce."""
    if not config.cuda_graphs or comms.get_world_size() == 1:
        return config
    if comms.is_main_process():
        CONSOLE.print(f"Training in {comms.get_world_size()} processes (DDP): cuda-graphs is off, the network runs eagerly.")
    return replace(config, cuda_graphs=False)  # type: ignore[type-var]
