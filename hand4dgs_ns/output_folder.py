"""Outputs that appear whole or not at all: written under a temporary sibling name, then renamed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hand4dgs_ns.errors import file_error


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``final`` that replaces ``final`` when the block ends.

    A block that raises leaves ``final`` as it was and no temporary folder behind; an
    operating-system error (disk full, no permission) becomes one sentence naming ``final``.
    """
    final = Path(final)
    tmp = final.parent / f".{final.name[:200]}.partial-{os.getpid()}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as err:
        raise file_error(final, f"could not be written ({err.strerror or err})", "choose an --output-dir you can write to") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        raise file_error(final, f"could not be written ({err.strerror or err})", "choose an output path you can write to") from None
    finally:
        tmp.unlink(missing_ok=True)
