"""Lets ``import torchvision`` succeed on a CPU-only torch when PyPI's torchvision is a CUDA build.

PyPI's torchvision wheel is built against CUDA torch. On a CPU-only torch its ops library
(``torchvision/_C.so``) fails to load, torchvision then registers fake kernels for
``torchvision::nms`` and ``torchvision::qnms`` (ops that were never defined) and the import
dies with ``RuntimeError: operator torchvision::nms does not exist``. nerfstudio imports
torchvision before any plugin code runs, so this guard is installed by a ``.pth`` file at
interpreter start: a meta-path hook that, the first time ``torchvision`` is imported, tries
to load the ops library itself and, only if that fails, defines the two op schemas so the
import completes (the ops themselves stay unavailable, and nothing here needs them). When
the library loads (any matching CUDA or CPU install) nothing is changed.

Written by hand because no library does this; torch is imported only when torchvision is.
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.util
import os
import sys

# Schemas exactly as torchvision's C++ sources declare them.
MISSING_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES = []  # keeps the torch.library.Library alive for the process


def ops_library_loads(library_path: str) -> bool:
    """True when torchvision's compiled ops library loads into this torch."""
    import torch

    try:
        torch.ops.load_library(library_path)
    except (OSError, RuntimeError):
        return False
    return True


def define_missing_op_schemas() -> None:
    """Declare the ops torchvision's fake-kernel registrations refer to at import time."""
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    for schema in MISSING_OP_SCHEMAS:
        lib.define(schema)
    _LIBRARIES.append(lib)


def guard_torchvision_import() -> bool:
    """Runs before torchvision's own import; returns True when schemas had to be defined."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    package_dir = list(spec.submodule_search_locations)[0]
    libraries = glob.glob(os.path.join(package_dir, "_C*.so")) + glob.glob(os.path.join(package_dir, "_C*.pyd"))
    if not libraries or ops_library_loads(libraries[0]):
        return False
    define_missing_op_schemas()
    return True


class _TorchvisionImportHook(importlib.abc.MetaPathFinder):
    """Fires once, on the first ``import torchvision``, then removes itself."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        try:
            guard_torchvision_import()
        except Exception:  # noqa: BLE001 - a failed guard must never break an import
            pass
        return None  # let the normal finders import torchvision


def install() -> None:
    """Called from the package's ``.pth`` file at interpreter start."""
    if "torchvision" in sys.modules or os.environ.get("HAND4DGS_NO_TORCHVISION_GUARD"):
        return
    if not any(isinstance(f, _TorchvisionImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionImportHook())
