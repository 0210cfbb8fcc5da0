"""How much a connected browser slows ``ns-train``: hand4dgs against one of nerfstudio's own methods.

Every run is a real ``ns-train <method> --vis viewer+tensorboard`` on the same frames (a
synthetic clip; nerfstudio's method reads them through a ``transforms.json`` of the clip's
egocentric cameras), with a headless Chromium (WebGL in software, as on a machine without a GPU)
showing the viewer. Seconds per training step come from the run's own tensorboard events:
nerfstudio writes them at the end of every step, so their wall times give whole steps, viewer
renders and waits included. The steps before the warm-up (start-up, the browser connecting and
its first renders, which on a CPU block a NeRF's training for a long while) are left out.

Two ways to compare, both interleaved:

* ``--mode runs``: separate runs with and without the browser (connected for the whole run),
  in the order method x browser, reversed every other repeat.
* ``--mode pause``: one run per method and repeat with the browser connected throughout; after
  the warm-up the browser is frozen (SIGSTOP) and resumed every ``--phase-s`` seconds until the
  run ends. Steps
  while it runs are compared with steps while it is frozen, seconds apart, which cancels most
  of the drift of other work on a shared machine. A frozen browser stays connected, so this
  measures what the running browser costs (its CPU), not the viewer's renders.

Each row of the table is a median over the runs (or phases) beside the median load average;
"slowdown" is the median of the paired ratios (browser / none, same repeat or neighbouring phases).

    python scripts/bench_viewer.py                         # hand4dgs and nerfacto, separate runs
    python scripts/bench_viewer.py --mode pause --steps 600 --nerfstudio-steps 200 --repeats 2
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import psutil
import tyro
from rich.console import Console
from rich.table import Table

console = Console(width=170)
BIN = Path(sys.executable).parent
ALEXNET = "alexnet-owt-7be5be79.pth"
"""torchvision's AlexNet weights: nerfstudio's models build an LPIPS metric from them when they start."""
NERFACTO_ON_CPU = (
    "--machine.device-type", "cpu", "--pipeline.datamanager.train-num-rays-per-batch", "128",
    "--pipeline.model.log2-hashmap-size", "15", "--pipeline.model.num-proposal-samples-per-ray", "64", "32",
    "--pipeline.model.num-nerf-samples-per-ray", "24",
)
STEP_LINE = re.compile(rb"^\s*(\d+) \(\d+\.\d+%\)", re.MULTILINE)
"""A row of nerfstudio's step table in the run's log."""


@dataclass(frozen=True)
class BenchViewer:
    """What to train and how to time it."""

    clip: Path = Path("/tmp/bench_viewer/clip")
    """Sequence folder to train on; a synthetic clip of ``--frames`` frames is written there if missing."""
    frames: int = 60
    """Frames of the synthetic clip (when it is written)."""
    methods: tuple[str, ...] = ("hand4dgs", "nerfacto")
    """ns-train methods to compare; other than hand4dgs they train on the clip's transforms.json.
    NAME:FOLDER runs NAME with FOLDER first on PYTHONPATH (e.g. another copy of hand4dgs_ns, to
    time a change against the code before it)."""
    mode: Literal["runs", "pause"] = "runs"
    """runs: separate runs with and without the browser; pause: the browser frozen and resumed within each run."""
    steps: int = 200
    """Training steps per hand4dgs run (--mode pause: phases alternate until the run ends; give it more)."""
    warmup: int = 50
    """Steps left out at the start of each hand4dgs run."""
    nerfstudio_steps: int = 80
    """Training steps per run of nerfstudio's method (slower per step on a CPU)."""
    nerfstudio_warmup: int = 25
    """Steps left out at the start of each run of nerfstudio's method."""
    nerfstudio_options: tuple[str, ...] = NERFACTO_ON_CPU
    """ns-train options of nerfstudio's method (the default: nerfacto's torch hash grids made small
    enough for a CPU step of about a second; its defaults take several seconds per step)."""
    repeats: int = 3
    """Runs per method and browser setting (--mode pause: runs per method), interleaved."""
    phase_s: float = 10.0
    """--mode pause: seconds per phase (frozen or running); well under websockets' 20 s ping timeout."""
    settle_s: float = 1.5
    """--mode pause: seconds left out after each freeze or resume."""
    window: tuple[int, int] = (1280, 720)
    """Browser window size in pixels (the viewer renders up to its Max res, 512, on the longer side)."""
    extra: tuple[str, ...] = ()
    """More ns-train options for every method."""
    work_dir: Path = Path("/tmp/bench_viewer")
    """Runs, logs and browser profiles go here."""
    timeout_s: float = 900.0
    """A run that takes longer is stopped and reported as failed."""
    json_out: Optional[Path] = None
    """Also write every phase's numbers here."""


@dataclass
class Phase:
    """A timed stretch of one run: all of it after the warm-up (--mode runs), or one freeze/resume phase."""

    method: str
    run: str
    browser: bool
    """The browser connected and running (not frozen)."""
    s_per_step: float
    """Mean wall seconds per step."""
    median_step_s: float
    steps: int
    renders: int
    """Viewer renders during the phase's steps (nerfstudio logs one 'Vis Rays / Sec' event per render)."""
    loadavg: float
    """1-minute load average, mean of the values at the phase's start and end."""
    browser_cores: float = 0.0
    """CPU cores the browser used while it ran (whole run)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_clip(clip: Path, frames: int) -> None:
    if (clip / "cameras.npz").exists():
        return
    from hand4dgs_ns.synthetic.clip import SynthConfig, synthesize_clip

    clip.parent.mkdir(parents=True, exist_ok=True)
    synthesize_clip(clip, SynthConfig(num_frames=frames), progress=False)


def write_transforms(clip: Path, folder: Path) -> Path:
    """A nerfstudio ``transforms.json`` of the clip's egocentric frames (OpenGL camera axes, one
    pinhole per frame, frames referred to where they are)."""
    from hand4dgs_ns.data.sequence_format import read_sequence

    sequence = read_sequence(clip)
    cams = sequence.cameras
    opencv_to_opengl = np.diag([1.0, -1.0, -1.0, 1.0])
    frames = [
        {
            "file_path": str(path.resolve()),
            "transform_matrix": (cams.c2w[i] @ opencv_to_opengl).tolist(),
            "fl_x": float(cams.K[i, 0, 0]), "fl_y": float(cams.K[i, 1, 1]),
            "cx": float(cams.K[i, 0, 2]), "cy": float(cams.K[i, 1, 2]),
            "w": cams.width, "h": cams.height,
        }
        for i, path in enumerate(sequence.image_paths)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}))
    return folder


def offline_torch_home(work_dir: Path) -> Optional[Path]:
    """A TORCH_HOME for nerfstudio's methods on a machine that cannot download AlexNet: their LPIPS
    metric then starts from untrained weights. The benchmark evaluates nothing, so they are never
    used. None when torch's cache already holds the real weights."""
    import torch

    if (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET).exists():
        return None
    home = work_dir / "torch_home"
    weights = home / "hub" / "checkpoints" / ALEXNET
    if not weights.exists():
        import torchvision

        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torchvision.models.alexnet().state_dict(), weights)
    return home


def is_ours(method: str) -> bool:
    return method.startswith("hand4dgs")


def method_args(cfg: BenchViewer, method: str, transforms: Optional[Path]) -> tuple[list[str], int, int]:
    """ns-train arguments, steps and warm-up steps of one method (NAME or NAME:FOLDER)."""
    name = method.split(":", 1)[0]
    if is_ours(name):
        return [name, "--data", str(cfg.clip)], cfg.steps, cfg.warmup
    return [name, "--data", str(transforms), *cfg.nerfstudio_options], cfg.nerfstudio_steps, cfg.nerfstudio_warmup


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _stop(proc: Optional[subprocess.Popen]) -> None:
    """Ends a process started here in its own session, and what it started."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGCONT)  # a frozen browser cannot act on SIGTERM
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _last_logged_step(log: Path) -> int:
    """The latest step in nerfstudio's step table (printed every 10 steps), -1 before the first."""
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 8192))
        steps = STEP_LINE.findall(f.read())
    return int(steps[-1]) if steps else -1


def step_events(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, wall times at each step's end, steps of the viewer's renders) from the run's tensorboard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    if not files:
        raise RuntimeError(f"no tensorboard events under {run_dir}")
    events = EventAccumulator(str(files[-1]), size_guidance={"scalars": 0})
    events.Reload()
    train = events.Scalars("Train Iter (time)")
    renders = events.Scalars("Vis Rays / Sec") if "Vis Rays / Sec" in events.Tags()["scalars"] else []
    return np.array([e.step for e in train]), np.array([e.wall_time for e in train]), np.array([e.step for e in renders])


def run_once(cfg: BenchViewer, method: str, browser: bool, transforms: Optional[Path], torch_home: Optional[Path],
             tag: str) -> list[Phase]:
    """One ns-train run; its timed phases as (start, end, browser running) wall-clock intervals, measured."""
    out = cfg.work_dir / "runs" / tag
    port = free_port()
    args, num_steps, warmup = method_args(cfg, method, transforms)
    cmd = [
        str(BIN / "ns-train"), *args, "--output-dir", str(out),
        "--vis", "viewer+tensorboard", "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port),
        "--viewer.quit-on-train-completion", "True", "--max-num-iterations", str(num_steps),
        "--steps-per-eval-batch", "0", "--steps-per-eval-image", "0", "--steps-per-eval-all-images", "1000000",
        "--steps-per-save", "1000000", *cfg.extra,
    ]
    env = dict(os.environ, COLUMNS="200")
    if torch_home is not None and not is_ours(method):
        env["TORCH_HOME"] = str(torch_home)
    if ":" in method:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [method.split(":", 1)[1], env.get("PYTHONPATH")]))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log_path = out / "ns-train.log"
    log = open(log_path, "w")
    trainer = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    chrome: Optional[subprocess.Popen] = None
    intervals: list[tuple[float, float, bool, float, float]] = []  # start, end, running, loadavg at start and end
    deadline = time.time() + cfg.timeout_s
    browser_cpu = running_s = 0.0
    try:
        while trainer.poll() is None and time.time() < deadline:  # the viewer listens before training starts
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        if browser and trainer.poll() is None:
            chrome = subprocess.Popen(
                ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--use-gl=swiftshader",
                 "--enable-unsafe-swiftshader", f"--user-data-dir={out / 'chromium-profile'}",
                 f"--window-size={cfg.window[0]},{cfg.window[1]}", "--remote-debugging-port=0", f"http://127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        if cfg.mode == "runs":
            start, load = time.time(), os.getloadavg()[0]
            while trainer.poll() is None and time.time() < deadline:
                if chrome is not None:  # the browser's CPU time so far (it ends with the run)
                    browser_cpu = max(browser_cpu, _tree_cpu_s(chrome.pid))
                time.sleep(2.0)
            intervals.append((start, time.time(), browser, load, os.getloadavg()[0]))
            running_s = time.time() - start
        else:
            while trainer.poll() is None and time.time() < deadline and _last_logged_step(log_path) < warmup:
                time.sleep(0.5)
            cpu_before = _tree_cpu_s(chrome.pid) if chrome is not None else 0.0
            running = True
            while trainer.poll() is None and time.time() < deadline:  # phases until the run ends
                running = not running
                if chrome is not None:
                    os.killpg(chrome.pid, signal.SIGCONT if running else signal.SIGSTOP)
                start, load = time.time(), os.getloadavg()[0]
                while trainer.poll() is None and time.time() < min(deadline, start + cfg.phase_s):
                    time.sleep(0.1)
                intervals.append((start + cfg.settle_s, time.time(), running, load, os.getloadavg()[0]))
                if chrome is not None and running and trainer.poll() is None:
                    browser_cpu = _tree_cpu_s(chrome.pid) - cpu_before
                    running_s += time.time() - start
    finally:
        _stop(chrome)
        _stop(trainer)
        log.close()
    if trainer.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({trainer.returncode}); see {log_path}")
    steps, walls, render_steps = step_events(out)
    phases = []
    for start, end, running, load0, load1 in intervals:
        # Whole steps inside the interval, after the warm-up: (previous step's end, this step's end].
        inside = (steps[1:] >= warmup) & (np.diff(steps) == 1) & (walls[:-1] >= start) & (walls[1:] <= end)
        durations = np.diff(walls)[inside]
        if len(durations) < 2:  # the run's last, cut-short phase
            continue
        timed = steps[1:][inside]
        phases.append(Phase(
            method=method, run=tag, browser=running, s_per_step=float(durations.mean()),
            median_step_s=float(np.median(durations)), steps=len(durations),
            renders=int(((render_steps >= timed.min()) & (render_steps <= timed.max())).sum()),
            loadavg=(load0 + load1) / 2, browser_cores=browser_cpu / running_s if running_s else 0.0,
        ))
    return phases


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_slowdowns(cfg: BenchViewer, phases: list[Phase], method: str) -> list[float]:
    """browser / none for runs of the same repeat (--mode runs), or for each running phase against
    the mean of the frozen phases either side of it (--mode pause)."""
    mine = [p for p in phases if p.method == method]
    if cfg.mode == "runs":
        by_repeat: dict[str, dict[bool, float]] = {}
        for p in mine:
            by_repeat.setdefault(p.run.rsplit("-", 1)[1], {})[p.browser] = p.s_per_step
        return [r[True] / r[False] for r in by_repeat.values() if len(r) == 2]
    ratios = []
    for run in dict.fromkeys(p.run for p in mine):
        seq = [p for p in mine if p.run == run]
        for i, p in enumerate(seq):
            neighbours = [q.s_per_step for q in seq[max(0, i - 1): i + 2] if not q.browser]
            if p.browser and neighbours:
                ratios.append(p.s_per_step / statistics.mean(neighbours))
    return ratios


def summary(cfg: BenchViewer, phases: list[Phase]) -> Table:
    unit = "runs" if cfg.mode == "runs" else f"{cfg.phase_s:g} s phases"
    table = Table(title=f"ns-train with the viewer ({cfg.mode}): seconds per training step after the warm-up, medians over "
                        f"{unit}, browser window {cfg.window[0]}x{cfg.window[1]}")
    for column in ("method", "browser", "s/step", "each (s/step)", "median step s", "renders", "browser cores",
                   "loadavg", "slowdown (paired)", "slowdown (medians)"):
        table.add_column(column, justify="right")
    for method in cfg.methods:
        base = _median([p.s_per_step for p in phases if p.method == method and not p.browser])
        pairs = paired_slowdowns(cfg, phases, method)
        for browser in (False, True):
            rows = [p for p in phases if p.method == method and p.browser == browser]
            if not rows:
                continue
            s_per_step = _median([p.s_per_step for p in rows])
            label = "yes" if browser else ("no" if cfg.mode == "runs" else "frozen")
            table.add_row(
                method, label, f"{s_per_step:.3f}", " ".join(f"{p.s_per_step:.3f}" for p in rows),
                f"{_median([p.median_step_s for p in rows]):.3f}", f"{sum(p.renders for p in rows)}",
                f"{_median([p.browser_cores for p in rows]):.2f}" if browser else "",
                f"{_median([p.loadavg for p in rows]):.2f}",
                f"{_median(pairs):.2f}x (n={len(pairs)})" if browser else "", f"{s_per_step / base:.2f}x" if browser else "",
            )
    return table


def main(cfg: BenchViewer) -> list[Phase]:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still stops its runs
    ensure_clip(cfg.clip, cfg.frames)
    others = [m for m in cfg.methods if not is_ours(m)]
    transforms = write_transforms(cfg.clip, cfg.work_dir / "transforms") if others else None
    torch_home = offline_torch_home(cfg.work_dir) if others else None
    cases = [(m, b) for m in cfg.methods for b in ((False, True) if cfg.mode == "runs" else (True,))]
    phases: list[Phase] = []
    for repeat in range(cfg.repeats):
        for method, browser in cases if repeat % 2 == 0 else cases[::-1]:
            tag = f"{method.replace(':', '@').replace('/', '_')}-{'browser' if browser else 'none'}-{repeat}"
            got = run_once(cfg, method, browser, transforms, torch_home, tag)
            phases += got
            for p in got:
                console.print(f"{tag}: browser {'running' if p.browser else ('off' if cfg.mode == 'runs' else 'frozen')}, "
                              f"{p.s_per_step:.3f} s/step over {p.steps} steps (median step {p.median_step_s:.3f} s), "
                              f"{p.renders} renders, loadavg {p.loadavg:.2f}")
            if cfg.json_out:
                cfg.json_out.write_text(json.dumps([asdict(p) for p in phases], indent=1))
    console.print(summary(cfg, phases))
    return phases


if __name__ == "__main__":
    main(tyro.cli(BenchViewer))
