"""Time the renderer: the torch reference on CPU and, where CUDA is present, the gsplat path.

CPU: two open hands (the shipped open-hand templates when ``hand4dgs_ns.hands`` provides
them, else two hand-sized ellipsoids of the same vertex count) at 160x120 with one Gaussian
per face plus one per vertex (~9.6K Gaussians), forward and forward+backward.
CUDA: the training-sized layout (10 per face, ~67K Gaussians) at 640x480 for several batch
sizes, through ``rasterize`` (one projection launch per camera, one batched rasterisation)
against a plain loop of ``gsplat.rasterization`` calls, unpacked and packed.

    python scripts/bench_render.py [--repeats 10]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import tyro
from rich.console import Console
from rich.table import Table

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.render import rasterize
from hand4dgs_ns.render.output import EPS2D, TILE_SIZE
from hand4dgs_ns.render.scenes import GaussianScene, Mesh, hand_like_scene

from _timing import times_ms  # a sibling module: scripts/ is on sys.path when a script runs

console = Console()


@dataclass(frozen=True)
class BenchConfig:
    """What to time."""

    repeats: int = 10
    """Timed runs per case (after two warm-up runs); the median is reported."""
    cuda_batches: tuple[int, ...] = (1, 8, 32)
    """Batch sizes (frames, one camera each) for the CUDA timings."""


def _open_hand_meshes() -> tuple[tuple[Mesh, Mesh] | None, str]:
    """The two open-hand rest meshes, or None (and why) when they are not available."""
    try:
        from hand4dgs_ns.hands import load_open_hand

        hands = [load_open_hand(side) for side in ("left", "right")]
    except (ImportError, Hand4DGSError) as err:
        return None, f"hand-sized ellipsoids (open hand unavailable: {type(err).__name__}: {err})"
    meshes = tuple((h.v_template.float(), h.faces) for h in hands)
    return meshes, f"open hand templates ({hands[0].num_vertices} vertices, {hands[0].faces.shape[0]} faces each)"


def _median_ms(fn: Callable[[], object], repeats: int, cuda: bool) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    return statistics.median(times_ms(fn, repeats, cuda, warmup=2))


def _with_grad(scene: GaussianScene) -> dict:
    kwargs = scene.kwargs()
    for name in ("means", "quats", "scales", "opacities", "colors"):
        kwargs[name] = kwargs[name].detach().clone().requires_grad_(True)
    return kwargs


def _forward_backward(render: Callable[[dict], tuple[torch.Tensor, ...]], kwargs: dict) -> Callable[[], None]:
    def step() -> None:
        loss = sum(x.sum() for x in render(kwargs))
        loss.backward()

    return step


def _ours(kwargs: dict) -> tuple[torch.Tensor, ...]:
    out = rasterize(**kwargs)
    return out.rgb, out.alpha, out.depth


def _gsplat_loop(packed: bool) -> Callable[[dict], tuple[torch.Tensor, ...]]:
    """B separate ``gsplat.rasterization`` calls: the straightforward way in gsplat 1.4.0."""
    import gsplat

    def render(kw: dict) -> tuple[torch.Tensor, ...]:
        outs = [
            gsplat.rasterization(
                kw["means"][b], kw["quats"][b], kw["scales"][b], kw["opacities"][b], kw["colors"][b],
                kw["viewmats"][b : b + 1], kw["Ks"][b : b + 1], kw["width"], kw["height"],
                eps2d=EPS2D, packed=packed, tile_size=TILE_SIZE, backgrounds=kw["backgrounds"][b : b + 1],
                render_mode="RGB+ED",
            )
            for b in range(kw["means"].shape[0])
        ]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    return render


def bench_cpu(cfg: BenchConfig) -> None:
    meshes, source = _open_hand_meshes()
    scene = hand_like_scene(batch=1, width=160, height=120, per_face=1, meshes=meshes)
    kwargs = _with_grad(scene)
    out = rasterize(**kwargs)
    console.print(f"CPU ({torch.get_num_threads()} threads), geometry: {source}")
    console.print(
        f"  {scene.means.shape[1]} Gaussians, 160x120, hands cover {100 * (out.alpha > 0.5).float().mean():.0f}% of the frame"
    )
    with torch.no_grad():
        fwd = times_ms(lambda: _ours(kwargs), cfg.repeats, cuda=False, warmup=2)
    both = times_ms(_forward_backward(_ours, kwargs), cfg.repeats, cuda=False, warmup=2)
    console.print(
        f"  torch reference: forward {statistics.median(fwd):.1f} ms (min {min(fwd):.1f}), "
        f"forward+backward {statistics.median(both):.1f} ms (min {min(both):.1f}); median of {cfg.repeats} runs"
    )
    console.print(f"  load average while timing: {os.getloadavg()[0]:.1f} (the CPU may be shared)")


def bench_cuda(cfg: BenchConfig) -> None:
    meshes, source = _open_hand_meshes()
    table = Table(title=f"CUDA ({torch.cuda.get_device_name()}), 640x480, geometry: {source}")
    for col in ("B", "N", "rasterize fwd", "rasterize fwd+bwd", "gsplat loop fwd+bwd (unpacked)",
                "gsplat loop fwd+bwd (packed)", "torch reference fwd+bwd"):
        table.add_column(col, justify="right")
    for batch in cfg.cuda_batches:
        scene = hand_like_scene(batch=batch, width=640, height=480, per_face=10, meshes=meshes, device="cuda")
        kwargs = _with_grad(scene)
        with torch.no_grad():
            fwd = _median_ms(lambda: _ours(kwargs), cfg.repeats, cuda=True)
        ours = _median_ms(_forward_backward(_ours, kwargs), cfg.repeats, cuda=True)
        loop_u = _median_ms(_forward_backward(_gsplat_loop(False), kwargs), cfg.repeats, cuda=True)
        loop_p = _median_ms(_forward_backward(_gsplat_loop(True), kwargs), cfg.repeats, cuda=True)
        ref_kwargs = dict(kwargs, backend="torch")
        ref = _median_ms(_forward_backward(_ours, ref_kwargs), max(2, cfg.repeats // 4), cuda=True) if batch <= 8 else float("nan")
        table.add_row(str(batch), str(scene.means.shape[1]), *(f"{t:.2f} ms" for t in (fwd, ours, loop_u, loop_p, ref)))
    console.print(table)


def main(cfg: BenchConfig) -> None:
    """Run the CPU benchmark, and the CUDA one when a GPU is present."""
    bench_cpu(cfg)
    if torch.cuda.is_available():
        bench_cuda(cfg)


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
