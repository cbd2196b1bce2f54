"""What the GPU machine has and lacks, in one place: its packages, the wheels that must travel, and the import block
that proves the list complete when `bench --budget gpu --rehearse` runs here.

The GPU machine (one H200, 16 cores, Python 3.12, torch 2.11, no network at all) holds the distributions in
`GPU_MACHINE`; everything else this package imports on the benchmark's path must travel as a wheel of `WHEELS`,
downloaded beforehand on a machine with the registry (`make gpu-kit`). A rehearsal run here sets `BLOCK_ENV`, and
every process of it then refuses to import any module whose distribution is in neither list (polars, sahi,
faster-coco-eval, openvino, ...), so a module the GPU machine lacks fails the rehearsal, not the GPU minutes.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The machine's own Python packages (device tool's KINDS.md, read 2026-11-17), as distribution names.
GPU_MACHINE = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split())

# What must travel, pinned (pure Python but pycocotools, which needs its cp312 manylinux wheel). polars, which
# Ultralytics imports at every checkpoint save, is not here on purpose: its wheel (54 MB) cannot travel beside the
# data, and the benchmark's trainers never reach that import (sprint.py).
WHEELS = ("ultralytics==8.4.190", "ultralytics-thop==2.2.3", "ultralytics-platform==0.1.99", "pycocotools==2.0.11")

# Here a distribution may stand in for the GPU machine's one of the same modules.
SAME_MODULES = {"opencv-python": "opencv-python-headless"}

BLOCK_ENV = "YOLO_INCEP_GPU_REHEARSAL"  # set: this process and its children import only what the GPU machine has

PIP_DOWNLOAD = ("python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
                "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "
                "-d .gpu/wheels")


def normalize(dist: str) -> str:
    """A distribution name as pip compares them ('PyYAML' -> 'pyyaml', 'ultralytics_thop' -> 'ultralytics-thop')."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def allowed() -> frozenset[str]:
    """Distributions a process on the GPU machine can import: the machine's and the travelling wheels'."""
    return GPU_MACHINE | {normalize(w.split("==")[0]) for w in WHEELS}


def blocked_modules() -> frozenset[str]:
    """Top-level modules installed here whose distributions the GPU machine would not have."""
    from importlib.metadata import packages_distributions

    ok = allowed()
    out = set()
    for module, dists in packages_distributions().items():
        names = {SAME_MODULES.get(normalize(d), normalize(d)) for d in dists}
        if not names & ok:
            out.add(module)
    return frozenset(out - {"yolo_incep", "_yolo_incep_editable"})  # the checkout itself travels


class _Blocker:
    """A meta-path finder that refuses the blocked top-level modules as if they were not installed."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not on the GPU machine: {BLOCK_ENV} is set)",
                                      name=fullname)
        return None


def block_if_rehearsing() -> None:
    """Under BLOCK_ENV, refuse every module the GPU machine lacks (children inherit the variable, and block too)."""
    if os.environ.get(BLOCK_ENV) != "1" or any(isinstance(f, _Blocker) for f in sys.meta_path):
        return
    names = blocked_modules()
    loaded = sorted(n for n in names if n in sys.modules)
    if loaded:  # imported before the block: the rehearsal would not prove what it claims
        raise RuntimeError(f"{BLOCK_ENV}: {', '.join(loaded)} imported before the block was installed")
    sys.meta_path.insert(0, _Blocker(names))


def prepare_kit(dest: Path = Path(".gpu")) -> int:
    """`make gpu-kit`: the wheels of WHEELS and a copy of the VisDrone sample into `dest` (git-ignored, carried to
    the GPU machine beside the checkout); prints what it holds against the 64 MiB the device tool carries."""
    import shutil
    import subprocess

    from .data.prepare import find_sample

    wheels = dest / "wheels"
    if wheels.exists():
        shutil.rmtree(wheels)  # one version of each: two stop the install there
    subprocess.run([*PIP_DOWNLOAD.split()[:-1], str(wheels), *WHEELS], check=True)
    sample = find_sample()
    copy = dest / sample.name
    if not copy.is_dir():
        shutil.copytree(sample, copy)  # a copy, not a link: a link travels as a link, without its files
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {size / 2**20:.1f} MiB ({len(list(wheels.glob('*.whl')))} wheels, {copy.name}); the checkout's "
          "tracked files travel with it: together at most 64 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(prepare_kit())
