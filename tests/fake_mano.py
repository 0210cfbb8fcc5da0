"""Fake MANO model files for tests: random arrays with the official names, shapes and dtypes,
pickled the way the official files are (big arrays wrapped in chumpy ``Ch`` objects)."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

NUM_VERTS = 778
MANO_PARENTS = [0, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]


def fake_mano_arrays(seed: int) -> dict:
    """Random arrays with the official files' names, shapes and dtypes."""
    rng = np.random.default_rng(seed)
    weights = rng.random((NUM_VERTS, 16)) ** 4
    regressor = rng.random((16, NUM_VERTS)) * (rng.random((16, NUM_VERTS)) < 0.05)
    regressor /= regressor.sum(axis=1, keepdims=True)
    kintree = np.array([[2**32 - 1] + MANO_PARENTS[1:], list(range(16))], dtype=np.int64)
    return {
        "v_template": rng.normal(scale=0.05, size=(NUM_VERTS, 3)),
        "shapedirs": rng.normal(scale=0.005, size=(NUM_VERTS, 3, 10)),
        "posedirs": rng.normal(scale=0.002, size=(NUM_VERTS, 3, 135)),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "weights": weights / weights.sum(axis=1, keepdims=True),
        "kintree_table": kintree,
        "f": rng.integers(0, NUM_VERTS, size=(1538, 3)).astype(np.uint32),
        "hands_components": rng.normal(size=(45, 45)),
        "hands_mean": rng.normal(scale=0.3, size=45),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_chumpy_pickle(path: Path, arrays: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickles ``arrays`` as the official files do: the big arrays wrapped in chumpy ``Ch``
    objects (a fake ``chumpy`` module, removed again once the file is written)."""
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            # What chumpy's Ch.__getstate__ returns: its __dict__ without the weak caches.
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch = chumpy.ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", chumpy_ch)
    wrapped = {k: Ch(v) if k in ("v_template", "shapedirs", "posedirs", "weights") else v for k, v in arrays.items()}
    path.write_bytes(pickle.dumps(wrapped, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    assert b"chumpy.ch" in path.read_bytes()


def write_fake_mano_dir(folder: Path, monkeypatch: pytest.MonkeyPatch, seed: int = 0) -> dict[str, dict]:
    """Writes chumpy-style ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` into ``folder``; returns the arrays by side."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {side: fake_mano_arrays(seed + i) for i, side in enumerate(("RIGHT", "LEFT"))}
    for side, a in arrays.items():
        write_chumpy_pickle(folder / f"MANO_{side}.pkl", a, monkeypatch)
    return arrays
