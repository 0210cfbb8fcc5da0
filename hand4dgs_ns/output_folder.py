"""Outputs that appear whole or not at all: written under a temporary sibling name, then renamed."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hand4dgs_ns.errors import file_error


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``final`` that replaces ``final`` when the block ends.

    A block that raises leaves ``final`` as it was and no temporary folder behind; an
    operating-system error in making the folder or moving it into place (disk full, no
    permission) becomes one sentence naming ``final``. Errors inside the block stay as they are.
    """
    final = Path(final)
    try:
        tmp = partial_folder(final)
    except OSError as err:
        raise _unwritable(final, err) from None
    try:
        yield tmp
        try:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as err:
            raise _unwritable(final, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unwritable(final: Path, err: OSError) -> Exception:
    return file_error(final, f"could not be written ({err.strerror or err})", "choose an output path you can write to")


@contextmanager
def atomic_file(final: Path, scratch: Path | None = None) -> Iterator[Path]:
    """Yields a temporary path (same suffix) that replaces ``final`` when the block ends.

    The temporary lies beside ``final``, or in ``scratch`` (on the same file system) where
    ``final``'s folder must hold only finished files. As :func:`atomic_folder`: a block that
    raises leaves ``final`` as it was and nothing behind.
    """
    final = Path(final)
    tmp = Path(scratch or final.parent) / f".{final.stem[:200]}.partial-{os.getpid()}{final.suffix}"
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_leftovers(tmp.parent, f".{final.stem[:200]}.partial-*{final.suffix}")
        except OSError as err:
            raise _unwritable(final, err) from None
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError as err:
            raise _unwritable(final, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def partial_folder(final: Path) -> Path:
    """A new empty hidden folder beside ``final`` (``.<name>.partial-<pid>``) to write ``final`` in,
    after removing those that killed processes left for the same ``final``."""
    final = Path(final)
    tmp = final.parent / f".{final.name[:200]}.partial-{os.getpid()}"
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final.parent, f".{final.name[:200]}.partial-*")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


LEFTOVER_AGE_S = 3600.0
"""Temporaries untouched for this long whose process is gone are a killed run's. The age guards a
writer on another machine sharing the folder, whose process id means nothing here."""


def remove_leftovers(folder: Path, pattern: str) -> None:
    """Removes temporaries matching ``pattern`` in ``folder`` left by killed runs: untouched for
    :data:`LEFTOVER_AGE_S` and with no process of their id on this machine. The writer's process
    id is the number ending the name: ``.name.partial-<pid>[.suffix]`` or ``.name.<pid>.tmp``."""
    now = time.time()
    for path in Path(folder).glob(pattern):
        digits = re.findall(r"[-.](\d+)(?:\.[A-Za-z0-9]+)?$", path.name)
        if not digits or _running(int(digits[-1])):
            continue
        try:
            if now - path.lstat().st_mtime < LEFTOVER_AGE_S:
                continue
        except OSError:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process with this id exists (it may be another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
