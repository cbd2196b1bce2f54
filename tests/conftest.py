"""Shared fixtures: a tiny deterministic synthetic YOLO dataset (no download) and a clean subprocess environment."""

import contextlib
import io
import os
import subprocess
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


# ---- models and layers (house-plugin): helpers shared by test_plugin, test_layers, test_fuse, test_zoo, test_weights

TRAIN = dict(epochs=1, imgsz=64, batch=8, workers=0, device="cpu", plots=False, amp=False, exist_ok=True)
TRAIN_ARGS = [f"{k}={v}" for k, v in TRAIN.items()]  # the same settings as `yolo train` arguments


def run_process(cmd: list, env: dict, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a child process (a fresh interpreter or the stock `yolo` CLI) and capture its text output."""
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def layer_shapes(model, imgsz: int = 64) -> list:
    """Output shape of every row but the head, for a zero image in eval mode: width and depth scaling, row by row."""
    import torch

    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for m in model.model[:-1]]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return shapes


def randomize_params(module, seed: int = 0) -> None:
    """Every parameter drawn from N(0, 0.2^2): outputs of order 1, where a 1e-5 tolerance is meaningful."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def randomize_norms(module, seed: int = 0, var: tuple[float, float] = (0.5, 1.5)) -> None:
    """Non-trivial BatchNorm statistics and affines and MetaNeXt layer scales, so that folding them, or mixing them
    up between layers, shows in the outputs (fresh BN is the identity, fresh layer scales are 1e-6)."""
    import torch
    from torch import nn

    from yolo_incep.nn import MetaNeXtBlock

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * (var[1] - var[0]) + var[0])
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            if isinstance(m, MetaNeXtBlock) and m.gamma is not None:
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.5)
