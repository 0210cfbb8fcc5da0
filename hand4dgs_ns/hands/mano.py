"""MANO hand templates from the user's ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``, without chumpy.

The official files (mano_v1_2) are Python 2 pickles (latin-1 strings) holding chumpy arrays,
and chumpy does not install on current numpy. :class:`_MANOUnpickler` is a restricted
unpickler: chumpy classes become a stand-in that keeps the array chumpy stores as ``x``, and
only numpy arrays, scipy sparse matrices and a few builtins may be created; anything else in
the file is refused (a pickle can otherwise run arbitrary code). The result matches
``smplx.MANO(model_path=..., use_pca=False, flat_hand_mean=...)`` loaded with chumpy.
"""

from __future__ import annotations

import builtins
import codecs
import copyreg
import importlib
import pickle
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands.template import HandSide, HandTemplate

MANO_URL = "https://mano.is.tue.mpg.de"
MANO_DIR_ENV = "HAND4DGS_MANO_DIR"
"""Environment variable naming the folder of the MANO files, used wherever no folder is passed."""


def mano_dir_from_env() -> Path | None:
    """The folder in ``$HAND4DGS_MANO_DIR``, or None when it is not set."""
    value = os.environ.get(MANO_DIR_ENV)
    return Path(value).expanduser() if value else None
MANO_TIP_VERTEX_IDS = (744, 320, 443, 554, 671)  # thumb, index, middle, ring, pinky
# MANO joints (wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3) + tips 16-20 -> OpenPose.
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f", "hands_mean")


class _ChumpyArray:
    """Stand-in for any chumpy class: unpickling keeps only the array chumpy stored as ``x``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _ChumpyArray:
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        self.array = np.asarray(state["x"]) if isinstance(state, dict) and "x" in state else None


def _numpy_multiarray() -> Any:
    try:  # numpy >= 1.26 names it numpy._core; older files say numpy.core
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")


_BUILTINS = {"object", "set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple"}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}


class _MANOUnpickler(pickle.Unpickler):
    """Creates only numpy arrays, scipy sparse matrices, chumpy stand-ins and plain builtins."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyArray
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return getattr(scipy.sparse, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(_numpy_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            return getattr(builtins, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return copyreg._reconstructor
        if module == "_codecs" and name == "encode":  # Python 3 pickles bytes this way
            return codecs.encode
        raise _ForeignObject(f"{module}.{name}")


class _ForeignObject(pickle.UnpicklingError):
    """A pickle that holds an object no MANO file holds (and that is never imported)."""


def _read_mano_pickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = _MANOUnpickler(f, encoding="latin1").load()
    except _ForeignObject as err:
        raise Hand4DGSError(
            f"{path} is not a MANO model file (it holds {err}, which MANO files do not); download it again from {MANO_URL}."
        ) from None
    except pickle.UnpicklingError:
        raise Hand4DGSError(f"{path} is not a MANO model file (not a Python pickle at all); download it again from {MANO_URL}.") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise Hand4DGSError(f"{path} could not be read as a MANO model file ({err}); download it again from {MANO_URL}.") from None
    if not isinstance(data, dict):
        raise Hand4DGSError(f"{path} is not a MANO model file (no dictionary inside); download it again from {MANO_URL}.")
    out = {}
    for key, value in data.items():
        if isinstance(value, _ChumpyArray):
            value = value.array
        elif scipy.sparse.issparse(value):
            value = value.toarray()
        out[key] = value
    missing = [k for k in _REQUIRED_KEYS if not isinstance(out.get(k), np.ndarray)]
    if missing:
        raise Hand4DGSError(f"{path} lacks the MANO arrays {', '.join(missing)}; download MANO_RIGHT.pkl/MANO_LEFT.pkl again from {MANO_URL}.")
    return out


def mano_side_from_name(path: Path) -> HandSide:
    """``right`` or ``left`` from a MANO file name (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``)."""
    name = path.name.upper()
    if "RIGHT" in name and "LEFT" not in name:
        return "right"
    if "LEFT" in name and "RIGHT" not in name:
        return "left"
    raise Hand4DGSError(f"Cannot tell which hand {path} models; keep the official names MANO_RIGHT.pkl and MANO_LEFT.pkl.")


def missing_mano_error(path: Path) -> Hand4DGSError:
    """The error for a MANO file that is not there."""
    return Hand4DGSError(
        f"MANO model file {path} not found; download MANO_RIGHT.pkl and MANO_LEFT.pkl from the MANO website ({MANO_URL}) after registering and put them there."
    )


def load_mano(path: Path | str, *, flat_hand_mean: bool = True, fix_left_shapedirs: bool = False) -> HandTemplate:
    """Reads an official MANO pickle into a :class:`HandTemplate` (16 joints, 778 vertices).

    Args:
        path: ``MANO_RIGHT.pkl`` or ``MANO_LEFT.pkl``; the side is read from the name.
        flat_hand_mean: zero ``hands_mean`` (pose 0 = flat hand); otherwise the file's mean
            pose, which :func:`~hand4dgs_ns.hands.lbs.hand_forward_axis_angle` adds.
        fix_left_shapedirs: flip the sign of the left file's ``shapedirs[:, 0, :]`` (a known bug
            in the official ``MANO_LEFT.pkl``). H2O and ARCTIC ground truth was made without
            the fix. Ignored for the right hand.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_mano_error(path)
    side = mano_side_from_name(path)
    data = _read_mano_pickle(path)

    shapedirs = np.array(data["shapedirs"], dtype=np.float64)
    if fix_left_shapedirs and side == "left":
        shapedirs[:, 0, :] *= -1.0
    posedirs = np.asarray(data["posedirs"], dtype=np.float64)
    parents = np.asarray(data["kintree_table"][0], dtype=np.int64)
    parents[0] = -1  # the file stores the root's parent as uint32 max
    hands_mean = np.zeros_like(data["hands_mean"]) if flat_hand_mean else data["hands_mean"]

    def floats(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    return HandTemplate(
        name="mano",
        side=side,
        v_template=floats(data["v_template"]),
        shapedirs=floats(shapedirs),
        posedirs=floats(posedirs.reshape(-1, posedirs.shape[-1]).T),
        J_regressor=floats(data["J_regressor"]),
        weights=floats(data["weights"]),
        parents=torch.as_tensor(parents),
        faces=torch.as_tensor(np.asarray(data["f"], dtype=np.int64)),
        tip_vertex_ids=torch.tensor(MANO_TIP_VERTEX_IDS),
        openpose_map=torch.tensor(MANO_TO_OPENPOSE),
        hands_mean=floats(np.asarray(hands_mean).reshape(-1)),
        uv=None,
    )
