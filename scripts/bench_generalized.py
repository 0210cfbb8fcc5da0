"""The feed-forward benchmark (the paper's Table 6 on a synthetic set): pseudo-labels, per-video
training on each held-out video, and the generalised model zero-shot on those videos; then
``hand4dgs infer`` speed with and without the feature extraction. Prints a table and writes
``results.json`` (and each run's logs) under ``--out``.

    python scripts/bench_generalized.py --out /tmp/gen --train 16 --test 4 --frames 300 \\
        --generalized-steps 12000 --per-video-steps 6000

Runs go in parallel (one process per run, sharing the GPU, each on its own share of the cores);
speed figures of training are therefore not comparable with single runs: only quality is read
from them. Host memory is
the peak resident size of each training process (from /proc); GPU memory is polled per process
with nvidia-smi.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script of this environment (beside the interpreter, else on PATH)."""
    return str(BIN / name) if (BIN / name).exists() else (shutil.which(name) or name)
KEYS = ("psnr", "ssim", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm")


@dataclass
class BenchGeneralized:
    out: Path
    """Work folder (data, runs, logs, results.json)."""
    train: int = 16
    """Training videos."""
    test: int = 4
    """Held-out videos."""
    frames: int = 300
    """Frames per video."""
    seed: int = 0
    """Seed of the synthetic set."""
    generalized_steps: int = 12000
    """Steps of the generalised run (its schedule scales with it)."""
    per_video_steps: int = 6000
    """Steps of each per-video run (its schedule scales with it)."""
    export_frames: int = 30
    """Frames of the first held-out video exported (splat PLYs and meshes) to time the export (0: none)."""
    tto_steps: int = 500
    """Test-time optimisation steps on each held-out video (0: no TTO rows)."""
    tto_free_pose: bool = True
    """TTO fine-tunes the pose path too (``hand4dgs tto``'s default); --no-tto-free-pose fine-tunes
    the appearance alone, the paper's Table-6 TTO."""
    frames_per_step: int = 8
    """Frames per training step."""
    device: str = "cuda"
    """Training device."""
    workers: int = 8
    """Processes for synthesising the set."""
    synth_extra: str = ""
    """More synth-set options, as one string (e.g. "--no-static-views")."""
    sequential: bool = False
    """Train the runs one after the other instead of all at once: on small machines, and on one GPU
    (four per-video runs sharing an H200 each ran about 8x slower than one alone)."""
    video: bool = True
    """Let infer write its mp4 (needs imageio-ffmpeg)."""
    extra: str = ""
    """More ns-train options for every run, as one string (e.g. "--pipeline.model.window 1")."""
    stages: tuple[Literal["generalized", "per-video"], ...] = ("generalized", "per-video")
    """What to run: the generalised run with its evaluation, TTO, infer and export; the per-video
    runs with theirs. Separate invocations (same --seed) can run them on separate machines;
    --merge then prints the joint table."""
    merge: tuple[Path, ...] = ()
    """Only print the table of these results.json files, merged (no runs)."""


class MemoryPoller(threading.Thread):
    """Peak memory (MiB) of each process, polled twice a second: host from /proc (VmHWM, the
    resident high-water mark), GPU from nvidia-smi."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pids: list[int] = []
        self.gpu: dict[int, float] = {}
        self.host: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in self.pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                match = re.search(r"VmHWM:\s+(\d+) kB", status)
                if match:
                    self.host[pid] = max(self.host.get(pid, 0.0), int(match.group(1)) / 1024)
            try:
                text = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=10,
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                text = ""
            for line in text.strip().splitlines():
                pid, used = (int(x) for x in line.split(","))
                self.gpu[pid] = max(self.gpu.get(pid, 0.0), float(used))
            self.stop.wait(0.5)


def train_command(method: str, data: Path, out: Path, steps: int, args: BenchGeneralized, extra: list[str]) -> list[str]:
    from hand4dgs_ns.method_configs import schedule_flags

    return [
        tool("ns-train"), method, "--data", str(data), "--output-dir", str(out), "--vis", "tensorboard",
        "--machine.device-type", args.device, "--max-num-iterations", str(steps), "--steps-per-eval-all-images", str(steps + 1),
        "--steps-per-save", str(steps), *schedule_flags(method, steps), "--pipeline.datamanager.frames-per-step", str(args.frames_per_step),
        *shlex.split(args.extra), *extra,
    ]


def core_shares(jobs: int) -> list[Optional[list[int]]]:
    """The cores of each of ``jobs`` runs started together: this process's cores split into shares
    as even as can be, or None (every core) for a single run or too few cores. The first core is
    left to the launching process while every run still gets two or more: on an H100, four full
    per-video schedules held to 4 of the 16 cores each ran together in 852 s, but the one given
    core 0 (beside the launching shell) ran its vertex steps at 23.5 ms against 6.6 for the others;
    runs kept off core 0 have not straggled. Earlier runs left to share every core were slower
    together than one after another (docs/benchmarks.md, "Runs sharing one GPU")."""
    cores = sorted(os.sched_getaffinity(0))
    if jobs <= 1 or len(cores) < jobs:
        return [None] * jobs
    if len(cores) - 1 >= 2 * jobs:
        cores = cores[1:]
    size, extra = divmod(len(cores), jobs)  # the first runs take one core more where it does not divide
    bounds = [i * size + min(i, extra) for i in range(jobs + 1)]
    return [cores[bounds[i] : bounds[i + 1]] for i in range(jobs)]


def pinned(command: list[str], cores: Optional[list[int]]) -> list[str]:
    """``command`` run on ``cores`` alone, with as many CPU threads: the interpreter sets its own
    affinity and execs the command, which keeps it (no taskset needed on the machine)."""
    if not cores:
        return command
    threads = str(len(cores))
    start = (
        "import os, sys; os.sched_setaffinity(0, {cores}); "
        "os.environ.update(OMP_NUM_THREADS='{t}', MKL_NUM_THREADS='{t}'); os.execvp(sys.argv[1], sys.argv[1:])"
    ).format(cores=cores, t=threads)
    return [sys.executable, "-c", start, *command]


def run_logged(command: list[str], log: Path, cores: Optional[list[int]] = None) -> subprocess.Popen:
    """Starts a command with its output in ``log`` (on ``cores`` alone when given)."""
    return subprocess.Popen(pinned(command, cores), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def start_all(commands: dict[str, list[str]], logs: Path) -> dict[str, subprocess.Popen]:
    """Starts commands in parallel, each on its own share of the cores with its output in ``logs/<name>.log``."""
    shares = core_shares(len(commands))
    return {name: run_logged(command, logs / f"{name}.log", cores) for (name, command), cores in zip(commands.items(), shares)}


def run_all(commands: dict[str, list[str]], logs: Path) -> None:
    """Runs commands in parallel (:func:`start_all`); stops on the first failure."""
    jobs = start_all(commands, logs)
    for name, job in jobs.items():
        if job.wait() != 0:
            raise SystemExit(f"{name} failed: see {logs / (name + '.log')}")


def evaluate_all(configs: dict[str, Path], out: Path, logs: Path) -> dict[str, dict]:
    """ns-eval of each run (in parallel); each run's results."""
    paths = {name: out / f"eval_{name}.json" for name in configs}
    run_all({f"eval_{name}": [tool("ns-eval"), "--load-config", str(c), "--output-path", str(paths[name])] for name, c in configs.items()}, logs)
    return {name: json.loads(path.read_text())["results"] for name, path in paths.items()}


def main(args: BenchGeneralized) -> None:
    if args.merge:
        print_table(*merged(args.merge))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    data, runs, logs = args.out / "set", args.out / "runs", args.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    if not (data / "splits.json").is_file():
        subprocess.run(
            [tool("hand4dgs"), "synth-set", str(data), "--train", str(args.train), "--test", str(args.test),
             "--frames", str(args.frames), "--seed", str(args.seed), "--workers", str(args.workers), "--overwrite",
             *shlex.split(args.synth_extra)],
            check=True,
        )
    synth_s = time.perf_counter() - started
    test_names = json.loads((data / "splits.json").read_text())["test"]
    env_cache = args.out / "cache"
    os.environ["HAND4DGS_CACHE_DIR"] = str(env_cache)

    # The generalised run over the set and one per-video run on each held-out video: all at once,
    # or (--sequential: small machines, one GPU) one after the other.
    poller = MemoryPoller()
    poller.start()
    commands = {}
    if "generalized" in args.stages:
        commands["generalized"] = train_command("hand4dgs-generalized", data, runs / "generalized", args.generalized_steps, args, [])
    if "per-video" in args.stages:
        for name in test_names:
            commands[name] = train_command("hand4dgs", data / name, runs / name, args.per_video_steps, args, [])
    jobs: dict[str, subprocess.Popen] = {}
    walls = {}
    for group in ([[n] for n in commands] if args.sequential else [list(commands)]):
        started_group = time.perf_counter()
        jobs.update(start_all({name: commands[name] for name in group}, logs))
        poller.pids = [job.pid for job in jobs.values()]
        for name in group:
            if jobs[name].wait() != 0:
                raise SystemExit(f"run {name} failed: see {logs / (name + '.log')}")
            walls[name] = time.perf_counter() - started_group
    poller.stop.set()
    results: dict = {
        "synth_s": synth_s,
        "train_wall_s": walls,
        "host_peak_mib": {name: poller.host.get(job.pid, float("nan")) for name, job in jobs.items()},
        "gpu_peak_mib": {name: poller.gpu.get(job.pid, float("nan")) for name, job in jobs.items()},
    }
    configs = {name: next((runs / name).rglob("config.yml")) for name in jobs}
    evaluated = evaluate_all(configs, args.out, logs)
    if "generalized" in evaluated:
        results["generalized"] = evaluated.pop("generalized")
    if evaluated:
        results["per_video"] = evaluated
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if "generalized" not in args.stages:
        print_table(results, test_names)
        return

    # Test-time optimisation of the generalised run on each held-out video: the first alone (its wall
    # time is the TTO speed figure), the others together.
    if args.tto_steps > 0:
        commands = {
            f"tto_{name}": [tool("hand4dgs"), "tto", "--load-config", str(configs["generalized"]), "--data", str(data / name),
                            "--steps", str(args.tto_steps), "--output-dir", str(runs / "tto" / name), "--frames-per-step", str(args.frames_per_step),
                            "--free-pose" if args.tto_free_pose else "--no-free-pose"]
            for name in test_names
        }
        first = next(iter(commands))
        run_all({first: commands.pop(first)}, logs)
        run_all(commands, logs)
        tto_configs = {f"tto_{name}": next((runs / "tto" / name).rglob("config.yml")) for name in test_names}
        evaluated = evaluate_all(tto_configs, args.out, logs)
        results["tto"] = {
            name: {"summary": json.loads((tto_configs[f"tto_{name}"].parent / "tto.json").read_text()), "eval": evaluated[f"tto_{name}"]}
            for name in test_names
        }
        results["tto_alone"] = test_names[0]
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    # Inference speed on the held-out videos: a fresh feature cache (extraction included), then a filled one.
    held_out = args.out / "held_out"
    held_out.mkdir(exist_ok=True)
    for name in test_names:
        target = held_out / name
        if not target.exists():
            target.symlink_to((data / name).resolve())
    infer = {}
    for label, cache in (("fresh_cache", args.out / "infer_cache"), ("filled_cache", args.out / "infer_cache")):
        if label == "fresh_cache":
            shutil.rmtree(cache, ignore_errors=True)
        target = args.out / f"infer_{label}"
        subprocess.run(
            [tool("hand4dgs"), "infer", "--load-config", str(configs["generalized"]), "--data", str(held_out),
             "--output-dir", str(target), "--cache-dir", str(cache), "--overwrite", "--batch-frames", "300", *(() if args.video else ("--no-video",))],
            check=True,
        )
        infer[label] = {name: json.loads((target / name / "metrics.json").read_text()) for name in test_names}
    results["infer"] = infer

    # Export speed: splat PLYs and meshes of the first held-out video's first frames.
    if args.export_frames > 0:
        text = subprocess.run(
            [tool("hand4dgs"), "export", "--load-config", str(configs["generalized"]), "--data", str(data / test_names[0]),
             "--output-dir", str(args.out / "export"), "--overwrite", "--frames", f"0:{args.export_frames}", "--cache-dir", str(args.out / "infer_cache")],
            check=True, capture_output=True, text=True,
        ).stdout
        match = re.search(r"in ([0-9.]+) ms per frame", text.replace("\n", " "))
        results["export_ms_per_frame"] = float(match.group(1)) if match else float("nan")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results, test_names)


def merged(paths: tuple[Path, ...]) -> tuple[dict, list[str]]:
    """Results of separate invocations as one; the held-out video names."""
    results: dict = {}
    for path in paths:
        for key, value in json.loads(path.read_text()).items():
            if isinstance(value, dict) and isinstance(results.get(key), dict):
                results[key] = {**results[key], **value}
            else:
                results[key] = value
    names = sorted(results.get("per_video", {}) or results.get("tto", {}) or {
        k.split("/")[0] for k in results.get("generalized", {}) if "/" in k
    })
    return results, names


def print_table(results: dict, test_names: list[str]) -> None:
    nan = float("nan")
    general, per_video = results.get("generalized", {}), results.get("per_video", {})

    def mean(rows: list[dict], key: str) -> float:
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else nan

    pseudo = general if general else next(iter(per_video.values()), {})
    rows = {
        "pseudo-labels (held-out videos)": {k: pseudo.get(f"pseudo_{k}", nan) for k in KEYS},
        "per-video (trained on each held-out video)": {k: mean(list(per_video.values()), k) for k in KEYS},
        "generalised, zero-shot": {k: general.get(k, nan) for k in KEYS},
    }
    if "tto" in results:
        tto = results["tto"]
        rows["generalised, zero-shot (image metrics on the per-video runs' held-out frames)"] = {
            k: mean([t["summary"]["before"] for t in tto.values()], k) if k in ("psnr", "ssim") else general.get(k, nan) for k in KEYS
        }
        free = all(t["summary"]["free_pose"] for t in tto.values())
        rows["generalised + TTO" + (" (pose free)" if free else " (appearance only)")] = {
            k: mean([t["eval"] for t in tto.values()], k) for k in KEYS
        }
    print("| rows | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(f"{row[k]:.3f}" if k == "ssim" else f"{row[k]:.2f}" for k in KEYS) + " |")
    for name in test_names:
        print(f"{name}: zero-shot " + ", ".join(f"{k} {general.get(f'{name}/{k}', nan):.2f}" for k in KEYS)
              + " | per-video " + ", ".join(f"{k} {per_video.get(name, {}).get(k, nan):.2f}" for k in KEYS))
    for label, videos in results.get("infer", {}).items():
        fps = [v["fps_cached_features"] for v in videos.values()]
        with_features = [v["fps_with_features"] for v in videos.values()]
        render = [v["fps_cached_features_with_render"] for v in videos.values()]
        print(f"infer ({label}): {sum(fps) / len(fps):.0f} frames/s cached features, {sum(render) / len(render):.0f} with the ego render, "
              f"{sum(with_features) / len(with_features):.0f} with feature extraction")
    if "tto" in results:
        walls = [t["summary"]["wall_s"] for t in results["tto"].values()]
        print(f"tto wall (s; the first alone, the others {len(walls) - 1} at once):", [round(w, 2) for w in walls])
    if "export_ms_per_frame" in results:
        print(f"export: {results['export_ms_per_frame']:.1f} ms per frame (prediction, splat PLY and mesh writing)")
    print("train wall (s):", {k: round(v) for k, v in results.get("train_wall_s", {}).items()})
    print("host peak (MiB):", {k: round(v) for k, v in results.get("host_peak_mib", {}).items()})
    print("gpu peak (MiB):", results.get("gpu_peak_mib", {}))


if __name__ == "__main__":
    main(tyro.cli(BenchGeneralized))
