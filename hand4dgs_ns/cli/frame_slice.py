"""``--frames START:STOP[:STEP]``: frame ranges on the command line, as Python slices."""

from __future__ import annotations

import re

from hand4dgs_ns.errors import Hand4DGSError

_SLICE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")


def parse_frame_slice(text: str) -> slice:
    """``start:stop[:step]`` of frame indices (each may be left out) as a slice; one sentence if malformed."""
    match = _SLICE.match(text)
    if match is None:
        raise Hand4DGSError(f"--frames '{text}' is not a slice of frame indices; pass start:stop such as 0:100 (either may be left out).")
    start, stop, step = (None if g is None else int(g) for g in match.groups())
    if step is not None and step <= 0:
        raise Hand4DGSError(f"--frames '{text}' has a step of {step}; pass a positive step such as 0:100:2.")
    return slice(start, stop, step)
