"""Shared fixtures: a tiny deterministic synthetic YOLO dataset (no download) and a clean subprocess environment."""

import os
import sys
from pathlib import Path

import pytest

from yolo_incep.demo import make_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """data.yaml of 16 train / 8 val 128-px images of small shapes."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_train=16, n_val=8, imgsz=128, seed=0)


@pytest.fixture(scope="session")
def fresh_env() -> dict:
    """Environment for a child process that has never imported yolo_incep (only the .pth hook is active)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
