"""MANO loading without chumpy: a fake MANO pickle holding chumpy-style objects must load and
skin exactly like smplx's MANO on the same arrays."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.hands import hand_forward_axis_angle, load_mano, load_template
from hand4dgs_ns.hands.mano import MANO_TIP_VERTEX_IDS, MANO_TO_OPENPOSE

from fake_mano import MANO_PARENTS, fake_mano_arrays, write_chumpy_pickle


@pytest.fixture
def mano_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict]:
    """A folder of chumpy-style MANO pickles and one of plain-numpy pickles for smplx."""
    chumpy_dir, plain_dir = tmp_path / "chumpy", tmp_path / "plain"
    chumpy_dir.mkdir()
    plain_dir.mkdir()
    arrays = {side: fake_mano_arrays(seed) for seed, side in enumerate(("RIGHT", "LEFT"))}
    for side, a in arrays.items():
        write_chumpy_pickle(chumpy_dir / f"MANO_{side}.pkl", a, monkeypatch)
        (plain_dir / f"MANO_{side}.pkl").write_bytes(pickle.dumps(a, protocol=2))
    return chumpy_dir, plain_dir, arrays


def smplx_joints21(model: smplx.MANO, **params) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(**params)
    tips = out.vertices[:, list(MANO_TIP_VERTEX_IDS)]
    return out.vertices, torch.cat([out.joints, tips], dim=1)[:, list(MANO_TO_OPENPOSE)]


def random_params(batch: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "betas": torch.randn(batch, 10, generator=g, dtype=torch.float64),
        "global_orient": torch.randn(batch, 3, generator=g, dtype=torch.float64),
        "hand_pose": 0.5 * torch.randn(batch, 45, generator=g, dtype=torch.float64),
        "transl": 0.1 * torch.randn(batch, 3, generator=g, dtype=torch.float64),
    }


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_chumpy_pickle_matches_smplx_mano(mano_dirs, side: str, flat_hand_mean: bool):
    chumpy_dir, plain_dir, _ = mano_dirs
    assert "chumpy" not in sys.modules and importlib.util.find_spec("chumpy") is None
    template = load_template("mano", side, chumpy_dir, flat_hand_mean=flat_hand_mean).to(dtype=torch.float64)
    assert "chumpy" not in sys.modules
    assert (template.name, template.side, template.num_joints, template.num_vertices, template.num_betas) == ("mano", side, 16, 778, 10)
    assert template.uv is None and template.parents.tolist() == [-1] + MANO_PARENTS[1:]

    reference = smplx.MANO(
        model_path=str(plain_dir / f"MANO_{side.upper()}.pkl"), use_pca=False, flat_hand_mean=flat_hand_mean, dtype=torch.float64
    )
    assert reference.is_rhand == (side == "right")
    params = random_params(3, seed=1)
    ref_verts, ref_joints = smplx_joints21(reference, **params)
    ours = hand_forward_axis_angle(template, params["global_orient"], params["hand_pose"], params["betas"], params["transl"])
    torch.testing.assert_close(ours.vertices, ref_verts, atol=1e-7, rtol=0)
    torch.testing.assert_close(ours.joints, ref_joints, atol=1e-7, rtol=0)
    assert flat_hand_mean == bool((template.hands_mean == 0).all())


def test_fake_pickle_really_needs_chumpy_without_our_loader(mano_dirs):
    chumpy_dir, _, _ = mano_dirs
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads((chumpy_dir / "MANO_RIGHT.pkl").read_bytes(), encoding="latin1")


def test_fix_left_shapedirs_flips_first_coordinate(mano_dirs):
    chumpy_dir, _, arrays = mano_dirs
    plain = load_mano(chumpy_dir / "MANO_LEFT.pkl")
    fixed = load_mano(chumpy_dir / "MANO_LEFT.pkl", fix_left_shapedirs=True)
    original = torch.from_numpy(arrays["LEFT"]["shapedirs"]).float()
    torch.testing.assert_close(plain.shapedirs, original)
    torch.testing.assert_close(fixed.shapedirs[:, 0], -original[:, 0])
    torch.testing.assert_close(fixed.shapedirs[:, 1:], original[:, 1:])
    right = load_mano(chumpy_dir / "MANO_RIGHT.pkl", fix_left_shapedirs=True)
    torch.testing.assert_close(right.shapedirs, torch.from_numpy(arrays["RIGHT"]["shapedirs"]).float())


def test_missing_mano_file_names_path_and_website(tmp_path: Path):
    with pytest.raises(Hand4DGSError) as err:
        load_template("mano", "left", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MANO_LEFT.pkl") in message and "https://mano.is.tue.mpg.de" in message and "regist" in message
    assert message.count(". ") == 0 and message.endswith(".")
    with pytest.raises(Hand4DGSError, match="MANO_RIGHT.pkl"):
        load_template("mano", "right", None)


def test_unpickler_refuses_other_objects(tmp_path: Path):
    class Sneaky:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Sneaky()}, protocol=2))
    with pytest.raises(Hand4DGSError, match="getcwd"):
        load_mano(path)


def test_unexpected_names_and_contents_are_user_errors(tmp_path: Path):
    odd_name = tmp_path / "hand.pkl"
    odd_name.write_bytes(pickle.dumps({}, protocol=2))
    with pytest.raises(Hand4DGSError, match="MANO_RIGHT.pkl"):
        load_mano(odd_name)
    incomplete = tmp_path / "MANO_RIGHT.pkl"
    incomplete.write_bytes(pickle.dumps({"v_template": np.zeros((778, 3))}, protocol=2))
    with pytest.raises(Hand4DGSError, match="shapedirs"):
        load_mano(incomplete)
    garbage = tmp_path / "MANO_LEFT.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(Hand4DGSError, match="MANO_LEFT.pkl is not a MANO model file \\(not a Python pickle at all\\)"):
        load_mano(garbage)


def test_mano_folder_defaults_to_the_environment_variable(mano_dirs, monkeypatch: pytest.MonkeyPatch):
    chumpy_dir, _, arrays = mano_dirs
    monkeypatch.setenv("HAND4DGS_MANO_DIR", str(chumpy_dir))
    template = load_template("mano", "left", None)
    torch.testing.assert_close(template.v_template, torch.from_numpy(arrays["LEFT"]["v_template"]).float())
    monkeypatch.delenv("HAND4DGS_MANO_DIR")
    with pytest.raises(Hand4DGSError, match="HAND4DGS_MANO_DIR"):
        load_template("mano", "left", None)
