"""User-facing errors: one clear sentence, no traceback."""

from __future__ import annotations

import errno
import pickle
import sys
from pathlib import Path, PurePath
from types import TracebackType
from typing import Optional


class Hand4DGSError(Exception):
    """A problem with the user's input (a path, a file, a layout) that the user can fix.

    The message is one sentence that names the file and says what to do. Command-line entry
    points catch it, print the message and exit with a non-zero status.
    """


def file_error(file: object, problem: str, fix: str) -> Hand4DGSError:
    """The project's sentence for a problem with one file or folder: ``"<file>: <problem>; <fix>."``."""
    return Hand4DGSError(f"{file}: {problem}; {fix}.")


_OS_PROBLEMS = {
    errno.EACCES: ("cannot be written or read (permission denied)", "choose a place you may write to, or change its permissions"),
    errno.EPERM: ("cannot be written or read (operation not permitted)", "choose a place you may write to, or change its permissions"),
    errno.EROFS: ("is on a read-only file system", "choose a place you may write to"),
    errno.ENOSPC: ("cannot be written: no space left on the device", "free some space or choose another disk"),
    errno.EDQUOT: ("cannot be written: disk quota exceeded", "free some space or choose another disk"),
    errno.ENAMETOOLONG: ("has a name too long for the file system", "choose a shorter name or a shallower folder"),
    errno.ENOTDIR: ("lies under a file, not a folder", "choose a path whose folders are folders"),
    errno.EEXIST: ("already exists where a new file or folder is needed", "choose another path or move it away"),
}


def os_error_sentence(err: OSError) -> Optional[Hand4DGSError]:
    """The sentence for an operating-system error the user can fix (permissions, a full or read-only
    disk, a name too long) that names its file; None for other errors."""
    problem = _OS_PROBLEMS.get(err.errno or -1)
    if problem is None or err.filename is None:
        return None
    # A rename names its destination second: that is the path the user chose.
    return file_error(err.filename2 if err.filename2 is not None else err.filename, *problem)


def _runs_hand4dgs_code(tb: Optional[TracebackType]) -> bool:
    """Whether the traceback passes through this package's code or holds one of its objects."""
    package = str(PurePath(__file__).parent)
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
        if frame.f_code.co_filename.startswith(package):
            return True
        if any(type(v).__module__.startswith("hand4dgs_ns.") for v in frame.f_locals.values()):
            return True
    return False


def _ns_export_splat_of_a_hand_run(exc: BaseException, tb: Optional[TracebackType]) -> Optional[Hand4DGSError]:
    """The sentence for ``ns-export gaussian-splat`` on a hand4dgs run, else None.

    nerfstudio's ``ExportGaussianSplat.main`` asserts that the model is a ``SplatfactoModel``
    (one static scene); our hands move in every frame. Recognised narrowly: an AssertionError
    whose traceback passes through ``main`` of ``ExportGaussianSplat`` in
    ``nerfstudio/scripts/exporter.py`` while that frame's pipeline holds one of our models.
    """
    if not isinstance(exc, AssertionError):
        return None
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
        code = frame.f_code
        if code.co_name != "main" or PurePath(code.co_filename).parts[-3:] != ("nerfstudio", "scripts", "exporter.py"):
            continue
        exporter = frame.f_locals.get("self")
        model = getattr(frame.f_locals.get("pipeline"), "model", None)
        if type(exporter).__name__ == "ExportGaussianSplat" and type(model).__module__.startswith("hand4dgs_ns."):
            config = getattr(exporter, "load_config", "<run>/config.yml")
            output_dir = getattr(exporter, "output_dir", "<folder>")
            return file_error(
                config,
                "is a hand4dgs run, whose hands move from frame to frame, and ns-export gaussian-splat writes one static splatfacto scene",
                f"run `hand4dgs export --load-config {config} --output-dir {output_dir}` instead (splats and meshes per frame)",
            )
    return None


_CHECKPOINT_LOADERS = {
    ("utils", "eval_utils.py", "eval_load_checkpoint"),  # ns-eval, ns-render, ns-viewer, ns-export
    ("engine", "trainer.py", "_load_checkpoint"),  # ns-train --load-dir / --load-checkpoint
}


def _hand_checkpoint_problem(exc: BaseException, tb: Optional[TracebackType]) -> Optional[Hand4DGSError]:
    """The sentence for a hand4dgs run whose checkpoint folder is empty or whose checkpoint is
    truncated or damaged, as nerfstudio's loaders meet it, else None.

    Recognised where nerfstudio's two checkpoint loaders fail, for runs of this package's methods:
    an empty folder makes them index an empty list; a damaged file makes ``torch.load`` raise.
    """
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
        code = frame.f_code
        if (*PurePath(code.co_filename).parts[-2:], code.co_name) not in _CHECKPOINT_LOADERS:
            continue
        local = frame.f_locals
        config = local.get("config") or getattr(local.get("self"), "config", None)
        if not str(getattr(config, "method_name", "")).startswith("hand4dgs"):
            return None
        if "load_path" not in local and local.get("load_dir") is None and local.get("load_checkpoint") is not None:
            local = {**local, "load_path": local["load_checkpoint"]}  # --load-checkpoint FILE
        if "load_path" not in local and isinstance(exc, (IndexError, ValueError)):
            folder = local.get("load_dir") or getattr(config, "load_dir", None)
            return file_error(
                folder, "holds no checkpoint (step-*.ckpt)", "train the run until it saves one (--steps-per-save) or pass another run"
            )
        path = local.get("load_path")
        if path is None or "loaded_state" in local:
            return None
        if not Path(path).is_file():
            return file_error(path, "does not exist", "pass a --load-step (or --load-checkpoint) that the run saved")
        if isinstance(exc, (EOFError, pickle.UnpicklingError)) or (
            isinstance(exc, RuntimeError) and any(word in str(exc) for word in ("zip", "archive", "PytorchStreamReader"))
        ):
            return file_error(
                path, f"is not a readable checkpoint ({type(exc).__name__}: it is truncated or damaged)",
                "delete it to use the one before, or train again",
            )
        return None
    return None


def _print_user_errors(exc_type, exc, tb, _fallback=sys.excepthook) -> None:
    if issubclass(exc_type, Hand4DGSError):
        print(f"error: {exc}", file=sys.stderr)
        return
    sentence = _ns_export_splat_of_a_hand_run(exc, tb) or _hand_checkpoint_problem(exc, tb)
    if sentence is None and isinstance(exc, OSError) and _runs_hand4dgs_code(tb):
        sentence = os_error_sentence(exc)
    if sentence is not None:
        print(f"error: {sentence}", file=sys.stderr)
        return
    _fallback(exc_type, exc, tb)


def install_excepthook() -> None:
    """Makes an uncaught :class:`Hand4DGSError` print its sentence instead of a traceback.

    nerfstudio's own commands (``ns-train``, ``ns-eval``, ...) run our dataparsers and models
    inside their code, where no ``try`` of ours can catch a user error; the plugin modules call
    this when nerfstudio loads them. ``ns-export gaussian-splat`` on a hand4dgs run, which fails
    on nerfstudio's own assertion, likewise points to ``hand4dgs export``; a hand4dgs run's
    empty checkpoint folder or damaged checkpoint is named, and so is the file of an
    operating-system error the user can fix (a read-only folder, a full disk). Other exceptions keep
    the usual traceback; the exit status stays 1.
    """
    if sys.excepthook is not _print_user_errors:
        sys.excepthook = _print_user_errors
