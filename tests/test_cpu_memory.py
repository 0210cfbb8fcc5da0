"""CPU training keeps freed memory for the next step instead of faulting it in again."""

import os
import platform
import statistics
import subprocess
import sys
import textwrap

import pytest

# A step shaped like an image-loss step's largest layer (the vertex embedding: a 64 -> 51,488 linear
# map, its gradient and Adam's update), printing the page faults per step once warmed up.
STEP = textwrap.dedent(
    """
    import resource, sys, torch
    from hand4dgs_ns.cpu_memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 51488))
    opt = torch.optim.Adam(net.parameters(), fused=True)
    x = torch.randn(4, 64)
    def step():
        opt.zero_grad()
        y = net(x).reshape(4, 1609, 32).index_select(1, torch.randint(0, 1609, (14415,)))
        y.square().mean().backward()
        opt.step()
    for _ in range(20):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
    """
)


def _faults_per_step(mode: str) -> float:
    """The median of three processes' page faults per step (the count varies from run to run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, check=True, env=env) for _ in range(3)]
    return statistics.median(int(run.stdout.split()[-1]) for run in runs)


_TUNED = [name for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES") if name in os.environ]


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
@pytest.mark.skipif(bool(_TUNED), reason="the allocator is tuned through the environment")
def test_a_training_step_reuses_freed_memory_instead_of_faulting_it_in_again():
    default, kept = _faults_per_step("default"), _faults_per_step("keep")
    assert default > 500  # glibc's defaults give the big blocks back: the check has teeth
    assert kept * 5 < default, (default, kept)
