"""The ``hand4dgs`` command: the project's own verbs, for what nerfstudio has no verb for.

Training, evaluation, rendering and the viewer are nerfstudio's own tools
(``ns-train hand4dgs``, ``ns-eval``, ``ns-render``, ``ns-viewer``).
"""

from __future__ import annotations

import sys
from typing import Union

import tyro
from rich.console import Console
from typing_extensions import Annotated

from hand4dgs_ns.cli.cache import Cache
from hand4dgs_ns.cli.convert import Convert
from hand4dgs_ns.cli.demo import Demo
from hand4dgs_ns.cli.export import Export
from hand4dgs_ns.cli.infer import Infer
from hand4dgs_ns.cli.tto import TTO
from hand4dgs_ns.cli.preprocess import Preprocess
from hand4dgs_ns.cli.render import Render
from hand4dgs_ns.cli.synth import Synth
from hand4dgs_ns.cli.synth_set import SynthSet
from hand4dgs_ns.errors import Hand4DGSError, os_error_sentence

Commands = Union[
    Annotated[Demo, tyro.conf.subcommand("demo", description="Synthesise the default clip, train on it, evaluate.")],
    Annotated[Synth, tyro.conf.subcommand("synth", description="Write a synthetic egocentric two-hand clip.")],
    Annotated[Infer, tyro.conf.subcommand("infer", description="Reconstruct new videos with a trained run, feed-forward.")],
    Annotated[TTO, tyro.conf.subcommand("tto", description="Fine-tune a trained run on a new video (test-time optimisation).")],
    Annotated[
        SynthSet,
        tyro.conf.subcommand("synth-set", description="Write synthetic train and test videos for a generalised model."),
    ],
    Annotated[Export, tyro.conf.subcommand("export", description="Write a run's hands per frame: splat PLYs, meshes, hands.npz.")],
    Annotated[
        Render,
        tyro.conf.subcommand("render", description="Render a run's hands to an mp4: an orbit at one frame, bullet time, or the ego path."),
    ],
    Annotated[
        Preprocess,
        tyro.conf.subcommand("preprocess", description="Run HaMeR on H2O or ARCTIC videos: pseudo-labels, features."),
    ],
    Annotated[
        Convert,
        tyro.conf.subcommand("convert", description="Write H2O or ARCTIC videos out as sequence folders."),
    ],
    Annotated[
        Cache,
        tyro.conf.subcommand("cache", description="List the feature cache per video and size the other cached folders; remove unused entries or those of deleted videos."),
    ],
]


def run_user_command(fn) -> None:
    """Runs a command; a user error prints one red sentence and exits with status 1."""
    try:
        fn()
    except Hand4DGSError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as err:
        sentence = os_error_sentence(err)
        if sentence is None:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {sentence}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)


def entrypoint() -> None:
    """Console-script entry point."""
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.cli(Commands)
    run_user_command(command.main)


if __name__ == "__main__":
    entrypoint()
