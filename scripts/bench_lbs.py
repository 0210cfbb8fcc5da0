"""Time hand skinning as training runs it: forward+backward of one open hand, before and now.

"before": ``HandLayer.template`` rebuilt (and validated) a ``HandTemplate`` on every call and
smplx's ``lbs`` composed the kinematic chain one joint at a time. "now": the layer keeps its
template and :func:`~hand4dgs_ns.hands.lbs.hand_forward` composes one tree level at a time.
The middle row, "smplx, kept" (smplx's ``lbs`` on the kept template), separates the two changes.

Besides wall time, each row counts what does not depend on the machine, forward and backward:
aten operators that compute (about one kernel launch each on a GPU), host reads of a tensor
value (each one a device sync on a GPU) and the autograd graph's nodes; on CUDA also the kernel
launches and stream syncs that the profiler sees. Float32; rotations, betas and translation
require grad; the backward pass starts from fixed random output gradients.

    python scripts/bench_lbs.py [--batch 16] [--repeats 50] [--cpu-threads 1]
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
import tyro
from rich.console import Console
from rich.table import Table
from smplx.lbs import lbs
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from hand4dgs_ns.geometry.rotations import axis_angle_to_matrix
from hand4dgs_ns.hands import HandLayer, HandOutput, HandTemplate, hand_forward, load_open_hand

from _timing import times_ms  # a sibling module: scripts/ is on sys.path when a script runs

console = Console()
Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class BenchConfig:
    """What to time."""

    batch: int = 16
    """Hands per call."""
    repeats: int = 50
    """Timed runs per case (after three warm-up runs); the median is reported."""
    cpu_threads: int = 1
    """Intra-op threads on CPU (on a shared machine more threads than free cores make the times
    swing by orders of magnitude); 0 keeps torch's default."""


def _smplx_forward(template: HandTemplate, inputs: Inputs) -> HandOutput:
    """``hand_forward`` as it was: smplx's ``lbs``, then fingertips and OpenPose order."""
    global_orient, hand_pose, betas, transl = inputs
    rotations = torch.cat([global_orient[:, None], hand_pose], dim=1)
    vertices, skeleton = lbs(
        betas,
        rotations,
        template.v_template,
        template.shapedirs[..., : betas.shape[-1]],
        template.posedirs,
        template.J_regressor,
        template.parents,
        template.weights,
        pose2rot=False,
    )
    joints = torch.cat([skeleton, vertices[:, template.tip_vertex_ids]], dim=1)[:, template.openpose_map]
    return HandOutput(vertices=vertices + transl[:, None], joints=joints + transl[:, None])


def _paths(layer: HandLayer) -> dict[str, Callable[[Inputs], HandOutput]]:
    def before(inputs: Inputs) -> HandOutput:
        held = layer.template
        rebuilt = HandTemplate(**{f.name: getattr(held, f.name) for f in dataclasses.fields(held)})
        return _smplx_forward(rebuilt, inputs)

    return {
        "before": before,
        "smplx, kept": lambda inputs: _smplx_forward(layer.template, inputs),
        "now": lambda inputs: hand_forward(layer.template, *inputs),
    }


def _inputs(template: HandTemplate, batch: int, device: str) -> Inputs:
    g = torch.Generator().manual_seed(0)
    aa = 0.4 * torch.randn(batch, template.num_joints, 3, generator=g)
    rot = axis_angle_to_matrix(aa).to(device)
    leaves = (rot[:, 0], rot[:, 1:], torch.randn(batch, template.num_betas, generator=g).to(device), torch.randn(batch, 3, generator=g).to(device))
    return tuple(x.contiguous().requires_grad_() for x in leaves)  # type: ignore[return-value]


def _step(path: Callable[[Inputs], HandOutput], inputs: Inputs) -> Callable[[], HandOutput]:
    """Forward, then backward from fixed random output gradients (no loss ops to count)."""
    g = torch.Generator().manual_seed(1)
    out = path(inputs)
    grads = [torch.randn(x.shape, generator=g).to(x.device) for x in (out.vertices, out.joints)]

    def step() -> HandOutput:
        out = path(inputs)
        torch.autograd.backward([out.vertices, out.joints], grads)
        return out

    return step


_NO_KERNEL = ("aten._unsafe_view.default", "aten.empty.memory_format", "aten.empty_strided.default", "aten.new_empty_strided.default")
_HOST_READ = "aten._local_scalar_dense.default"  # .item() and friends: a device sync on a GPU


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators that compute (views, metadata changes and allocations launch nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if not func.is_view and str(func) not in _NO_KERNEL:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))

    def kernels(self) -> int:
        return self.ops.total() - self.ops[_HOST_READ]


def _graph_nodes(out: HandOutput) -> int:
    seen, todo = set(), [out.vertices.grad_fn, out.joints.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def _cuda_launches(step: Callable[[], object]) -> tuple[int, int]:
    """Kernel launches and stream syncs (what a host read of a device value waits on) of one step."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
    names = Counter(e.name for e in prof.events())
    launches = sum(names[name] for name in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"))
    return launches, names["cudaStreamSynchronize"]


def bench(cfg: BenchConfig, device: str) -> Table:
    """One table: every path on ``device``."""
    cuda = device == "cuda"
    layer = HandLayer(load_open_hand("right")).to(device)
    template = layer.template
    inputs = _inputs(template, cfg.batch, device)
    where = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f})"
    table = Table(title=f"Open hand (J={template.num_joints}, V={template.num_vertices}), B={cfg.batch}, float32, forward+backward: {where}")
    columns = ("path", "median ms", "min ms", "aten ops", "host reads", "graph nodes", *(("launches", "syncs") if cuda else ()))
    for col in columns:
        table.add_column(col, justify="right")
    reference = None
    for label, path in _paths(layer).items():
        step = _step(path, inputs)
        out = step()
        reference = out if reference is None else reference
        torch.testing.assert_close(out.vertices, reference.vertices, atol=1e-5, rtol=0)  # every path poses the same hand
        with _OpCounter() as counter:
            step()
        times = times_ms(step, cfg.repeats, cuda, warmup=3)
        row = [label, f"{statistics.median(times):.2f}", f"{min(times):.2f}", str(counter.kernels()), str(counter.ops[_HOST_READ])]
        row.append(str(_graph_nodes(path(inputs))))
        if cuda:
            row += [str(n) for n in _cuda_launches(step)]
        table.add_row(*row)
    return table


def main(cfg: BenchConfig) -> None:
    """Benchmark on CPU, and on CUDA when a GPU is present."""
    if cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    console.print(bench(cfg, "cpu"))
    if torch.cuda.is_available():
        console.print(bench(cfg, "cuda"))


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
