"""Ablations of the image phase of per-video training, on one or more clips.

Each clip is trained once through the vertex phase (the schedule's first two thirds) and
evaluated there; every variant then resumes from that checkpoint with its own options for the
image phase and is evaluated at the end. All runs are ``ns-train hand4dgs`` and ``ns-eval``
as a user would type them (printed beside the table), so a row can be reproduced by hand.

    python scripts/ablate_image_phase.py --data clipA clipB --out /tmp/abl --steps 30000 \\
        --variants "baseline=" "silhouette=--pipeline.model.silhouette-loss-weight 1"

Prints a table of the means over the clips (pose errors also as multiples of the pseudo-labels')
and writes ``results.json`` and ``table.md`` into ``--out``.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
import yaml
from bench_generalized import run_all, tool

from hand4dgs_ns.method_configs import hand4dgs_trainer, method_schedule, scaled_factors, schedule_flags

KEYS = ("psnr", "psnr_square", "ssim", "ssim_square", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm")
POSE = ("mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm")


@dataclass
class AblateImagePhase:
    data: tuple[Path, ...]
    """Sequence folders (clips) to train on."""
    out: Path
    """Work folder: runs, logs, results.json, table.md."""
    steps: int = 30000
    """Steps of the whole schedule (image loss from two thirds on, as hand4dgs)."""
    frames_per_step: int = 8
    gaussians_per_face: int = 10
    image_scale: float = 1.0
    device: str = "cuda"
    variants: tuple[str, ...] = ("baseline=",)
    """Image-phase variants as NAME=ns-train options (empty options: the defaults)."""
    extra: str = ""
    """More ns-train options for every run (vertex phase included)."""
    jobs: int = 1
    """Runs at once, each on its own share of the cores: on an H100 four per-video runs so held
    finished their full schedules together in 852 s (docs/benchmarks.md, "Runs sharing one GPU")."""


def base_command(args: AblateImagePhase, clip: Path, name: str, steps_to: int) -> list[str]:
    image_from, _ = method_schedule("hand4dgs", args.steps)
    return [
        tool("ns-train"), "hand4dgs", "--data", str(clip), "--output-dir", str(args.out / "runs"),
        "--experiment-name", clip.name, "--timestamp", name, "--vis", "tensorboard",
        "--machine.device-type", args.device, "--max-num-iterations", str(steps_to),
        "--steps-per-eval-all-images", str(args.steps + 1), "--steps-per-save", str(image_from),
        *schedule_flags("hand4dgs", args.steps),
        "--pipeline.datamanager.frames-per-step", str(args.frames_per_step),
        "--pipeline.datamanager.image-scale", str(args.image_scale),
        # The method's coarse-loss factors count rendered pixels: scaled with the renders, as the demo does.
        "--pipeline.model.coarse-loss-factors", *map(str, scaled_factors(hand4dgs_trainer().pipeline.model.coarse_loss_factors, args.image_scale)),
        "--pipeline.model.gaussians-per-face", str(args.gaussians_per_face),
        *shlex.split(args.extra),
    ]


def run_dir(args: AblateImagePhase, clip: Path, name: str) -> Path:
    return args.out / "runs" / clip.name / "hand4dgs" / name


def forget_resume(config_path: Path) -> None:
    """Makes a resumed run's config evaluate its own last checkpoint: ns-eval honours the
    --load-dir and --load-step the run resumed from, which name the vertex run's checkpoint."""
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    config.load_dir, config.load_step = None, None
    config_path.write_text(yaml.dump(config))


def in_batches(commands: dict[str, list[str]], jobs: int, logs: Path) -> None:
    items = list(commands.items())
    for i in range(0, len(items), jobs):
        run_all(dict(items[i : i + jobs]), logs)


def main(args: AblateImagePhase) -> None:
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    image_from, _ = method_schedule("hand4dgs", args.steps)
    variants = dict(v.split("=", 1) for v in args.variants)
    shown: dict[str, str] = {}

    # The vertex phase, shared by every variant (one step into the image phase: nerfstudio saves after a step).
    vertex = {f"vertex_{c.name}": base_command(args, c, "vertex", image_from + 1) for c in args.data}
    shown["vertex phase"] = shlex.join(next(iter(vertex.values())))
    start = time.perf_counter()
    in_batches(vertex, args.jobs, logs)
    print(f"vertex phase: {time.perf_counter() - start:.0f} s")

    resumed = {}
    for name, options in variants.items():
        for c in args.data:
            checkpoints = run_dir(args, c, "vertex") / "nerfstudio_models"
            # nerfstudio resumes at the saved step + 1 and then runs --max-num-iterations more steps.
            resumed[f"{name}_{c.name}"] = base_command(args, c, name, args.steps - image_from - 1) + [
                "--load-dir", str(checkpoints), "--load-step", str(image_from), *shlex.split(options)
            ]
        shown[name] = shlex.join(resumed[f"{name}_{args.data[0].name}"])
    start = time.perf_counter()
    in_batches(resumed, args.jobs, logs)
    print(f"image phases: {time.perf_counter() - start:.0f} s")
    for name in variants:
        for c in args.data:
            forget_resume(run_dir(args, c, name) / "config.yml")

    evals = {}
    for name in ("vertex", *variants):
        for c in args.data:
            evals[f"eval_{name}_{c.name}"] = [
                tool("ns-eval"), "--load-config", str(run_dir(args, c, name) / "config.yml"),
                "--output-path", str(args.out / f"eval_{name}_{c.name}.json"),
            ]
    in_batches(evals, max(args.jobs, 1), logs)

    results = {
        name: {c.name: json.loads((args.out / f"eval_{name}_{c.name}.json").read_text())["results"] for c in args.data}
        for name in ("vertex", *variants)
    }
    (args.out / "results.json").write_text(json.dumps({"results": results, "commands": shown}, indent=1))
    table = markdown_table(results, shown, image_from)
    (args.out / "table.md").write_text(table)
    print(table)


def markdown_table(results: dict, shown: dict, image_from: int) -> str:
    def mean(rows: dict, key: str) -> float:
        values = [r[key] for r in rows.values() if key in r]
        return sum(values) / len(values) if values else float("nan")

    first = next(iter(results.values()))
    lines = [
        "| run | PSNR | PSNR sq. | SSIM | SSIM sq. | MPJPE (x pseudo) | RA-MPJPE (x pseudo) | Acc Err (x pseudo) |",
        "|---|---|---|---|---|---|---|---|",
        "| pseudo-labels | - | - | - | - | " + " | ".join(f"{mean(first, 'pseudo_' + k):.2f}" for k in POSE) + " |",
    ]
    for name, rows in results.items():
        label = f"end of vertex phase (step {image_from})" if name == "vertex" else name
        cells = [f"{mean(rows, k):.2f}" if "psnr" in k else f"{mean(rows, k):.3f}" for k in KEYS[:4]]
        cells += [f"{mean(rows, k):.2f} ({mean(rows, k) / mean(rows, 'pseudo_' + k):.2f}x)" for k in POSE]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {name}: `{command}`" for name, command in shown.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(AblateImagePhase))
