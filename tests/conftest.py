"""Shared fixtures: a tiny deterministic synthetic YOLO dataset (no download) and a clean subprocess environment."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import settings

from helpers import COMPARE_SIZE
from yolo_incep.demo import make_synthetic_dataset

# Tests assert behaviour, never speed: a per-example deadline fails at random on a loaded 2-core CI machine.
settings.register_profile("untimed", deadline=None)
settings.load_profile("untimed")


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


@pytest.fixture(scope="session")
def run_cli():
    """run_cli(*argv) runs `yolo-incep` in-process: (exit status, stdout, stderr)."""
    from yolo_incep.cli import main

    def run(*argv) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
        return rc, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def snapshot():
    """snapshot(root): every file under root with its inode, size and mtime (equal snapshots: nothing was touched)."""
    def files(root: Path) -> dict[str, tuple[int, int, int]]:
        return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(root.rglob("*")) if p.is_file()}

    return files


@pytest.fixture(scope="session")
def read_only():
    """read_only(folder): a context in which no file can be created in `folder`, root included (who ignores the
    permission bits: the immutable attribute stops it, and the test skips where there is none)."""
    @contextlib.contextmanager
    def context(folder: Path):
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("running as root on a filesystem without `chattr +i`: no folder is read-only to root")
            try:
                yield
            finally:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            mode = folder.stat().st_mode
            folder.chmod(0o555)
            try:
                yield
            finally:
                folder.chmod(mode)

    return context


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """4 val images of bright squares (small and medium), one with an ignored region; classes a, b."""
    root = tmp_path_factory.mktemp("compare_data")
    rng = np.random.default_rng(0)
    for sub in ("images", "labels", "ignore"):
        (root / sub / "val").mkdir(parents=True)
    for i in range(4):
        im = np.full((COMPARE_SIZE, COMPARE_SIZE * 2, 3), 40, np.uint8)
        rows = []
        for k in range(6):
            s = int(rng.integers(6, 40))
            x, y = int(rng.integers(0, COMPARE_SIZE * 2 - s)), int(rng.integers(0, COMPARE_SIZE - s))
            im[y:y + s, x:x + s] = 220
            cx, cy, w, h = (x + s / 2) / (COMPARE_SIZE * 2), (y + s / 2) / COMPARE_SIZE, s / (COMPARE_SIZE * 2), s / COMPARE_SIZE
            rows.append(f"{k % 2} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        cv2.imwrite(str(root / f"images/val/im{i}.jpg"), im)
        (root / f"labels/val/im{i}.txt").write_text("\n".join(rows) + "\n")
    (root / "ignore/val/im0.txt").write_text("0.875000 0.500000 0.250000 1.000000\n")
    (root / "data.yaml").write_text(f"path: {root}\nval: images/val\nnames: [a, b]\n")
    return root / "data.yaml"
