"""Per-video training benchmark: trains hand4dgs through nerfstudio's Trainer and prints speed,
memory and the final metrics as one JSON line.

    python scripts/bench_train.py --data <sequence> --steps 30000 [--window 1] [--per-gaussian-embeddings]
    python scripts/bench_train.py --data <sequence> --phase-speed 200 [--no-cuda-graphs] [--compile]

``--phase-speed N`` trains nothing: it times N of nerfstudio's training iterations in each
loss phase (after N warm-up iterations, which include compilation) and prints, per phase, the
iterations per second and where a step's time goes (batch, forward + loss, backward,
optimiser), each stage timed with the GPU synchronised around it.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import tyro

from hand4dgs_ns.cli.demo import setup_trainer
from hand4dgs_ns.method_configs import hand4dgs_trainer, set_image_scale


@dataclass
class BenchTrain:
    data: Path
    """Sequence folder to train on."""
    steps: int = 30000
    """Training steps (the whole schedule scales with it)."""
    window: Optional[int] = None
    """Temporal window (1 = no TC); None keeps the method's."""
    per_gaussian_embeddings: bool = False
    """The per-Gaussian embedding ablation."""
    context_gradient: bool = True
    """--no-context-gradient: neighbour frames' crops encoded without gradient (the model's option)."""
    frames_per_step: int = 8
    """Frames per step."""
    gaussians_per_face: int = 10
    """Gaussians per face."""
    image_scale: float = 1.0
    """Render scale."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Training device."""
    output_dir: Path = Path("/tmp/bench_train")
    """Run folder root."""
    seed: int = 42
    """Trainer seed."""
    json_out: Optional[Path] = None
    """Also write the result JSON here."""
    compile: bool = False
    """torch.compile the hand branches."""
    profile_steps: int = 0
    """After training, profile this many extra steps and print the top operators."""
    compile_mode: str = "default"
    """torch.compile mode (with --compile)."""
    cuda_graphs: bool = True
    """Replay the network's forward and backward as CUDA graphs (the model's default); --no-cuda-graphs for eager."""
    compile_graphs: bool = True
    """Compile the network before recording its graphs (the model's default)."""
    with_evals: bool = False
    """Keep the method's evaluation cadence during training (off: training steps only)."""
    phase_speed: int = 0
    """Instead of training, time this many iterations of each loss phase."""
    stop_after: int = 0
    """Stop (and checkpoint) after this many steps of the --steps schedule; 0 runs it to the end.
    With --resume, a long schedule runs as several shorter commands."""
    resume: bool = False
    """Continue the run in --output-dir from its latest checkpoint."""
    profile_phase: bool = False
    """With --phase-speed: also profile 5 iterations of each phase (top operators, launch and sync counts)."""
    tf32: bool = False
    """Let float32 matrix products use TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)."""
    steps_per_log: int = 10
    """nerfstudio's logging interval (its default: 10 steps); each log reads the losses back from the GPU."""
    find_syncs: bool = False
    """With --phase-speed: print where each host-GPU wait of a step comes from (torch's sync debug mode)."""
    cudnn_benchmark: bool = True
    """cuDNN's autotuner, on in ns-train (--no-cudnn-benchmark: cuDNN's heuristics)."""
    vis: str = "tensorboard"
    """nerfstudio's --vis for the run ("viewer" is the method's default; "tensorboard" writes event files)."""
    cprofile_steps: Tuple[int, int] = (0, 0)
    """Profile training steps [a, b) of the loop with cProfile (host time only); the table goes to
    $OUT/cprofile.txt, or stdout."""

    def main(self) -> dict:
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        config = hand4dgs_trainer(self.steps)
        config.output_dir = self.output_dir
        config.machine.device_type = self.device
        config.machine.seed = self.seed
        config.vis = self.vis  # type: ignore[assignment]
        config.viewer.quit_on_train_completion = True
        if not self.with_evals:
            config.steps_per_eval_batch = 0
            config.steps_per_eval_image = 0
        config.steps_per_eval_all_images = self.steps + 1
        config.steps_per_save = self.steps
        config.logging.local_writer.enable = False
        config.logging.steps_per_log = self.steps_per_log
        dm, model = config.pipeline.datamanager, config.pipeline.model
        dm.data = self.data
        dm.frames_per_step = self.frames_per_step
        set_image_scale(config, self.image_scale)
        if self.window is not None:
            model.window = self.window
        model.per_gaussian_embeddings = self.per_gaussian_embeddings
        model.context_gradient = self.context_gradient
        model.gaussians_per_face = self.gaussians_per_face
        model.compile = self.compile
        model.compile_mode = self.compile_mode  # type: ignore[assignment]
        model.cuda_graphs = self.cuda_graphs
        model.compile_graphs = self.compile_graphs
        config.timestamp = "run"  # a fixed run folder, so --resume finds it
        run_dir = config.get_base_dir()
        start = 0
        if self.resume:
            checkpoints = sorted((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
            if not checkpoints:
                raise SystemExit(f"--resume: no checkpoint under {run_dir / 'nerfstudio_models'}")
            config.load_dir = checkpoints[-1].parent
            start = int(checkpoints[-1].stem.split("-")[1]) + 1
        end = min(self.steps, start + self.stop_after) if self.stop_after else self.steps
        config.max_num_iterations = end - start  # the trainer counts from the checkpoint's step + 1
        run_dir.mkdir(parents=True, exist_ok=True)  # ns-train makes it when it saves config.yml; the viewer logs there
        trainer = setup_trainer(config)  # seeded, cuDNN's autotuner on: as ns-train
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.phase_speed:
            result = phase_speed(trainer, self.phase_speed, self.device, self.profile_phase)
            if self.find_syncs:
                find_syncs(trainer)
            return result
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        stamps = step_stamps(trainer, self.cprofile_steps)
        start_time = time.perf_counter()
        trainer.train()
        if self.device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start_time
        metrics = trainer.pipeline.get_average_eval_image_metrics() if end == self.steps else {}
        result = {
            "steps": self.steps,
            "ran_steps": [start, end],
            "window": trainer.pipeline.model.config.window,
            "per_gaussian_embeddings": self.per_gaussian_embeddings,
            "context_gradient": self.context_gradient,
            "frames_per_step": self.frames_per_step,
            "gaussians_per_face": self.gaussians_per_face,
            "compile": self.compile,
            "cuda_graphs": self.cuda_graphs,
            "compile_graphs": self.compile_graphs,
            "num_gaussians": sum(b.num_gaussians for b in trainer.pipeline.model.network.branches),
            "it_per_s": (end - start) / wall,
            "wall_s": wall,
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if self.device == "cuda" else None,
            "device": torch.cuda.get_device_name() if self.device == "cuda" else "cpu",
            **phase_times(stamps, trainer.pipeline.model.config.image_loss_from),
            **metrics,
        }
        print("RESULT " + json.dumps(result))
        if self.profile_steps:
            profile(trainer.pipeline, self.profile_steps)
        if self.json_out:
            self.json_out.write_text(json.dumps(result, indent=2))
        return result


def step_stamps(trainer, cprofile_steps: Tuple[int, int] = (0, 0)) -> dict:
    """Records when each training iteration starts and ends (host clock), by wrapping
    ``train_iteration``: ``stamps[step] = (start, end)``. Optionally runs cProfile over a range of steps."""
    stamps: dict = {}
    iteration = trainer.train_iteration
    first, last = cprofile_steps
    profiler = cProfile.Profile() if last > first else None

    def timed(step: int):
        if profiler is not None and step == first:
            profiler.enable()
        if profiler is not None and step == last:
            profiler.disable()
            _write_cprofile(profiler, last - first)
        start = time.perf_counter()
        out = iteration(step)
        stamps[step] = (start, time.perf_counter())
        return out

    trainer.train_iteration = timed
    return stamps


def _write_cprofile(profiler: "cProfile.Profile", steps: int) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write(f"cProfile over {steps} training steps of the loop\n")
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    if out := os.environ.get("OUT"):
        Path(out, "cprofile.txt").write_text(text.getvalue())
    else:
        print(text.getvalue())


def phase_times(stamps: dict, image_from: int) -> dict:
    """Seconds of each loss phase's first step (compiling and recording), it/s over the rest, and
    the mean host milliseconds per step spent outside ``train_iteration`` (nerfstudio's loop).

    Host timestamps: the GPU runs at most a step or two behind them, negligible over thousands.
    """
    steps = sorted(stamps)
    if len(steps) < 3:
        return {}
    start = {s: stamps[s][0] for s in steps}
    out = {}
    for phase, lo, hi in (("vertex", steps[0], min(image_from, steps[-1])), ("image", image_from, steps[-1])):
        if lo in start and lo + 1 in start and hi > lo + 1 and hi in start:
            out[f"{phase}_first_step_s"] = start[lo + 1] - start[lo]
            out[f"{phase}_it_per_s"] = (hi - lo - 1) / (start[hi] - start[lo + 1])
            outside = [start[s + 1] - stamps[s][1] for s in range(lo + 1, hi)]
            out[f"{phase}_loop_ms"] = 1000 * sum(outside) / len(outside)
            out[f"{phase}_by_1000"] = _chunks(stamps, lo + 1, hi, 1000)
    return out


def _chunks(stamps: dict, lo: int, hi: int, size: int) -> list:
    """[first step, it/s, mean ms inside train_iteration, mean ms outside it, slowest step ms] per
    ``size`` steps: shows whether a phase slows down as training goes on, and where."""
    rows = []
    for a in range(lo, hi - 1, size):
        b = min(a + size, hi - 1)
        inside = [stamps[s][1] - stamps[s][0] for s in range(a, b)]
        step = [stamps[s + 1][0] - stamps[s][0] for s in range(a, b)]
        rows.append([a, round((b - a) / sum(step), 1), round(1000 * sum(inside) / len(inside), 3),
                     round(1000 * (sum(step) - sum(inside)) / len(step), 3), round(1000 * max(step), 1)])
    return rows


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def phase_speed(trainer, n: int, device: str, profile_phase: bool = False) -> dict:
    """it/s of ``trainer.train_iteration`` in the vertex-only and the image phase, and a per-stage split."""
    model = trainer.pipeline.model
    result: dict = {"compile": model.config.compile, "compile_mode": model.config.compile_mode, "cuda_graphs": model.config.cuda_graphs, "compile_graphs": model.config.compile_graphs}
    for phase, first in (("vertex", 0), ("image", model.config.image_loss_from)):
        for i in range(n):  # warm-up, compilation included
            model.step = first + i
            trainer.train_iteration(first + i)
        _sync(device)
        start = time.perf_counter()
        for i in range(n):
            model.step = first + n + i
            trainer.train_iteration(first + n + i)
        _sync(device)
        result[f"{phase}_it_per_s"] = n / (time.perf_counter() - start)
        stages = {"batch": 0.0, "forward_loss": 0.0, "backward": 0.0, "optimizer": 0.0}
        for i in range(n):
            step = first + 2 * n + i
            model.step = step
            t0 = time.perf_counter()
            camera, batch = trainer.pipeline.datamanager.next_train(step)
            _sync(device)
            t1 = time.perf_counter()
            outputs = model(camera)
            losses = model.get_loss_dict(outputs, batch)
            loss = sum(losses.values())
            _sync(device)
            t2 = time.perf_counter()
            loss.backward()
            _sync(device)
            t3 = time.perf_counter()
            trainer.optimizers.optimizer_step_all()
            trainer.optimizers.zero_grad_all()
            _sync(device)
            t4 = time.perf_counter()
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[key] += dt
        for key, total in stages.items():
            result[f"{phase}_{key}_ms"] = 1000 * total / n
        if profile_phase:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for i in range(5):
                    model.step = first + 3 * n + i
                    trainer.train_iteration(first + 3 * n + i)
                _sync(device)
            events = prof.key_averages()
            print(f"== {phase} phase, 5 iterations: top operators by self CPU time")
            print(events.table(sort_by="self_cpu_time_total", row_limit=25))
            print(events.table(sort_by="self_cuda_time_total", row_limit=15))
            if out := os.environ.get("OUT"):  # the whole kernel table, for reading later
                table = events.table(sort_by="self_cuda_time_total", row_limit=80, max_name_column_width=120)
                Path(out, f"profile_{phase}.txt").write_text(table)
            calls = {e.key: e.count for e in events}
            print({k: calls.get(k, 0) / 5 for k in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaMemcpyAsync", "cudaStreamSynchronize", "cudaDeviceSynchronize")})
    print("RESULT " + json.dumps(result))
    return result


def find_syncs(trainer, iterations: int = 2) -> None:
    """Prints the Python stack of every host-GPU wait in a few iterations of each loss phase.

    Waits inside a C++ extension (gsplat's) show the Python call that reached them.
    """
    import traceback
    import warnings

    model = trainer.pipeline.model
    seen: dict = {}

    def show(message, category, filename, lineno, file=None, line=None):
        stack = "".join(traceback.format_stack()[-8:-2])
        seen[stack] = seen.get(stack, 0) + 1

    for phase, first in (("vertex", 1), ("image", model.config.image_loss_from + 1)):
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for i in range(iterations):
                    model.step = first + i
                    trainer.train_iteration(first + i)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        print(f"== {phase} phase: {sum(seen.values()) / iterations:.1f} waits per iteration")
        for stack, count in seen.items():
            print(f"-- {count / iterations:.1f} per iteration at:\n{stack}")


def profile(pipeline, steps: int) -> None:
    """Top operators of a few forward+backward passes (CPU and CUDA time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    pipeline.train()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        for step in range(steps):
            _, losses, _ = pipeline.get_train_loss_dict(step)
            sum(losses.values()).backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=30))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=20))


if __name__ == "__main__":
    tyro.cli(BenchTrain).main()
