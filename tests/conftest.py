"""Shared fixtures: every test writes under pytest's temporary folders, never into the user's cache or the repository."""
import os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # the dev tools outside the package import as `tools.*` (tools/docsite.py)


@pytest.fixture(scope="session", autouse=True)
def private_dirs(tmp_path_factory):
    "Point anomalyforge's cache and demo-data folders at a session temp dir (the bundled weights get remapped there once)."
    base = tmp_path_factory.mktemp("anomalyforge-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANOMALYFORGE_CACHE", str(base / "cache"))
        mp.setenv("ANOMALYFORGE_DATA", str(base / "data"))
        mp.delenv("ANOMALYFORGE_WEIGHTS", raising=False)
        mp.setenv("MPLBACKEND", "Agg")
        yield base


@pytest.fixture(scope="session")
def textures(tmp_path_factory):
    "A tiny MVTec-layout texture dataset: brick, 20 train, 6 good and 4 defects x 3 test images (160 px crops)."
    from anomalyforge.demo_data import make_textures
    return make_textures(tmp_path_factory.mktemp("textures"), textures=("brick",), n_train=20, n_test_good=6, n_per_defect=3)


@pytest.fixture(scope="session")
def user_env(private_dirs):
    "The environment a subprocess (the console script) runs in: the user's, with anomalyforge's folders in temp."
    env = dict(os.environ)
    env.update(ANOMALYFORGE_CACHE=str(private_dirs / "cache"), ANOMALYFORGE_DATA=str(private_dirs / "data"),
               MPLBACKEND="Agg")
    return env
