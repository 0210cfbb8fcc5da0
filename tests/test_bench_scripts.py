"""The benchmark scripts' parallel runs: each run started together gets its own share of the cores."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
bench_generalized = importlib.import_module("bench_generalized")


def test_core_shares_split_the_cores_as_evenly_as_they_can(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    # Core 0 is left to the launching process while every run still gets two cores or more.
    assert bench_generalized.core_shares(4) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15]]
    assert bench_generalized.core_shares(3) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]]
    assert bench_generalized.core_shares(8) == [[2 * i, 2 * i + 1] for i in range(8)]
    # One run, or more runs than cores: nothing is pinned.
    assert bench_generalized.core_shares(1) == [None]
    assert bench_generalized.core_shares(17) == [None] * 17


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_runs_started_together_each_run_on_their_own_cores(tmp_path):
    report = "import json, os; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS']]))"
    bench_generalized.run_all({"a": [sys.executable, "-c", report], "b": [sys.executable, "-c", report]}, tmp_path)
    (cores_a, threads_a), (cores_b, threads_b) = (json.loads((tmp_path / f"{n}.log").read_text()) for n in "ab")
    assert cores_a and cores_b and not set(cores_a) & set(cores_b)
    assert set(cores_a) | set(cores_b) <= os.sched_getaffinity(0)
    assert (int(threads_a), int(threads_b)) == (len(cores_a), len(cores_b))


def test_a_single_run_keeps_every_core(tmp_path):
    report = "import os; print(len(os.sched_getaffinity(0)))"
    bench_generalized.run_all({"only": [sys.executable, "-c", report]}, tmp_path)
    assert int((tmp_path / "only.log").read_text()) == len(os.sched_getaffinity(0))
