"""A trained run's network, loaded from its ``config.yml`` and checkpoint (the newest unless the
config's ``load_step`` names one, as for ``ns-eval``), without its training data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml
from nerfstudio.engine.trainer import TrainerConfig

from hand4dgs_ns.errors import Hand4DGSError, file_error
from hand4dgs_ns.features.frame_inputs import FrameInputs
from hand4dgs_ns.features.video_inputs import VideoFrames, build_frame_inputs
from hand4dgs_ns.network.hand_network import HandNetwork
from hand4dgs_ns.pipeline import color_crops_read

HAND_METHODS = ("hand4dgs", "hand4dgs-generalized")
_PREFIX = "_model.network."


@dataclass(frozen=True)
class TrainedRun:
    """A run folder's configuration and the path of its checkpoint (the newest, or the config's ``load_step``)."""

    config_path: Path
    """The run's config.yml."""
    config: TrainerConfig
    """Its training configuration (model, datamanager, dataparser options)."""
    checkpoint: Path
    """Its newest ``step-*.ckpt``, or the one of the config's ``load_step``."""

    @property
    def step(self) -> int:
        return int(self.checkpoint.stem.split("-")[-1])


def read_run(config_path: Path) -> TrainedRun:
    """The run of ``config_path``; one sentence if it is not a finished hand4dgs run with a checkpoint."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise file_error(config_path, "does not exist", "pass the config.yml of a hand4dgs run (outputs/<experiment>/hand4dgs/<time>/config.yml)")
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except (yaml.YAMLError, OSError, AttributeError, TypeError, ValueError) as err:
        raise file_error(config_path, f"is not a readable nerfstudio config ({type(err).__name__})", "pass the config.yml that ns-train wrote") from None
    if not isinstance(config, TrainerConfig):
        raise file_error(config_path, "is not a nerfstudio run config", "pass the config.yml that ns-train wrote")
    if config.method_name not in HAND_METHODS:
        raise file_error(
            config_path, f"is a run of the method '{config.method_name}'", f"pass the config.yml of a {' or '.join(HAND_METHODS)} run"
        )
    # Checkpoints sit beside the config whatever the folder the run was started from (the per-step
    # config copies of scripts/eval_checkpoints.sh have the run's nerfstudio_models linked beside them).
    model_dir = config_path.parent / config.relative_model_dir
    if config.load_step is not None:  # as ns-eval: the config names the step
        checkpoint = model_dir / f"step-{config.load_step:09d}.ckpt"
        if not checkpoint.is_file():
            raise file_error(checkpoint, "does not exist", f"set load_step in {config_path.name} to a saved step, or to null for the newest")
        return TrainedRun(config_path=config_path, config=config, checkpoint=checkpoint)
    steps = {p: p.stem.removeprefix("step-") for p in model_dir.glob("step-*.ckpt")}
    checkpoints = sorted((p for p, step in steps.items() if step.isdigit()), key=lambda p: int(steps[p]))
    if not checkpoints:
        raise file_error(model_dir, "holds no checkpoint (step-*.ckpt)", "let training reach its first save, or pass another run")
    return TrainedRun(config_path=config_path, config=config, checkpoint=checkpoints[-1])


def network_weights(run: TrainedRun) -> dict[str, torch.Tensor]:
    """The network's state dict from the run's checkpoint."""
    try:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    except Exception as err:  # noqa: BLE001 - any failure to read the file means the same to the user
        raise file_error(run.checkpoint, f"cannot be read as a checkpoint ({type(err).__name__})", "delete it to fall back to an earlier one, or retrain") from None
    weights = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(_PREFIX):
            weights[key[len(_PREFIX):]] = value
    return weights


def run_frame_inputs(run: TrainedRun, videos: Sequence[VideoFrames], cache_dir: Optional[Path] = None) -> FrameInputs:
    """``videos``' backbone inputs as the run's datamanager made them (backbone, weights, crop size),
    from the feature cache in ``cache_dir`` or the run's own."""
    dm = run.config.pipeline.datamanager
    color_crop_scale = dm.color_crop_scale if color_crops_read(run.config.pipeline) else 1
    return build_frame_inputs(videos, dm.backbone, dm.hamer_checkpoint, cache_dir or dm.cache_dir, dm.crop_size, color_crop_scale)


def load_network(run: TrainedRun, inputs: FrameInputs, device: torch.device | str) -> HandNetwork:
    """The run's network, built for ``inputs``' backbone inputs, with the checkpoint's weights, in eval mode."""
    weights = network_weights(run)
    network = HandNetwork(run.config.pipeline.model, inputs.spec)
    expected = network.state_dict()
    mismatch = [k for k, v in expected.items() if k not in weights or weights[k].shape != v.shape]
    if mismatch:
        raise Hand4DGSError(
            f"{run.checkpoint} does not fit a network for this clip's backbone inputs ({inputs.kind} {inputs.spec.shape}; "
            f"first mismatch: {mismatch[0]}): compute the clip's features with the run's backbone "
            f"('{run.config.pipeline.datamanager.backbone}'), or pass a run trained with this backbone."
        )
    network.load_state_dict(weights)
    return network.to(device).eval()


def training_data(run: TrainedRun) -> Path:
    """The data the run was trained on (``ns-train --data``); one sentence if the config does not name it."""
    dm = run.config.pipeline.datamanager
    data = dm.data if dm.data is not None else dm.dataparser.data
    if data is None or Path(data) == Path():
        raise file_error(run.config_path, "does not say which data the run was trained on", "pass the videos with --data")
    return Path(data)
