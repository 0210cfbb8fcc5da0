"""User-facing errors: one clear sentence, no traceback."""

from __future__ import annotations

import sys


class Hand4DGSError(Exception):
    """A problem with the user's input (a path, a file, a layout) that the user can fix.

    The message is one sentence that names the file and says what to do. Command-line entry
    points catch it, print the message and exit with a non-zero status.
    """


def file_error(file: object, problem: str, fix: str) -> Hand4DGSError:
    """The project's sentence for a problem with one file or folder: ``"<file>: <problem>; <fix>."``."""
    return Hand4DGSError(f"{file}: {problem}; {fix}.")


def _print_user_errors(exc_type, exc, tb, _fallback=sys.excepthook) -> None:
    if issubclass(exc_type, Hand4DGSError):
        print(f"error: {exc}", file=sys.stderr)
        return
    _fallback(exc_type, exc, tb)


def install_excepthook() -> None:
    """Makes an uncaught :class:`Hand4DGSError` print its sentence instead of a traceback.

    nerfstudio's own commands (``ns-train``, ``ns-eval``, ...) run our dataparsers and models
    inside their code, where no ``try`` of ours can catch a user error; the plugin modules call
    this when nerfstudio loads them. Other exceptions keep the usual traceback; the exit status
    stays 1.
    """
    if sys.excepthook is not _print_user_errors:
        sys.excepthook = _print_user_errors
