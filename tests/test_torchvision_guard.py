"""The .pth-installed torchvision guard: CPU installs import torchvision, others are untouched."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hand4dgs_ns import _torchvision_guard as guard


def test_guard_is_installed_as_pth():
    """The install put the guard's .pth into site-packages, so it runs at interpreter start."""
    code = "import sys, hand4dgs_ns._torchvision_guard as g; print(any(isinstance(f, g._TorchvisionImportHook) for f in sys.meta_path))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_torchvision_imports_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", "import torchvision.ops; print(torchvision.__version__)"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_loadable_ops_library_is_left_alone(tmp_path):
    """When torchvision's ops library loads (a matching install), no schema is defined."""
    torch_lib = Path(torch.__file__).parent / "lib"
    loadable = next(iter(sorted(torch_lib.glob("libc10.so*"))), None)
    if loadable is None:
        pytest.skip("no libc10 shared library found next to torch")
    assert guard.ops_library_loads(str(loadable))
    assert not guard.ops_library_loads(str(tmp_path / "missing.so"))


def test_guard_decides_from_the_ops_library(tmp_path, monkeypatch):
    """Schemas are defined exactly when the library cannot load."""
    calls = []
    monkeypatch.setattr(guard, "define_missing_op_schemas", lambda: calls.append(1))
    monkeypatch.setattr(guard, "ops_library_loads", lambda path: True)
    assert guard.guard_torchvision_import() is False and calls == []
    monkeypatch.setattr(guard, "ops_library_loads", lambda path: False)
    assert guard.guard_torchvision_import() is True and calls == [1]

