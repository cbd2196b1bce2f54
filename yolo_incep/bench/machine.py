"""The lent GPU machine in one place: what it holds, the wheels that must travel, the limits of its lease, and the
blocks that make a CPU rehearsal fail where that machine would (`enter()`, called first by every process of a
sitting: under `REHEARSAL_ENV` no import of a module the machine lacks; always, no connection off the machine).

    python -m yolo_incep.bench.machine     # `make gpu-kit`: the wheels and the VisDrone sample into .gpu/
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

MiB = 2**20


@dataclass(frozen=True)
class LentMachine:
    """One lent machine's facts (device tool's README.md and KINDS.md, read 2026-11-17)."""

    kinds: str
    python: str
    torch: str
    cores: int
    lease_s: int  # device time of a task, every start, wait and command included
    start_s: tuple[int, int]  # what a machine's start costs, from - to
    command_s: int  # one command's limit (timeout_s at most)
    warm_s: int  # how long the machine stays warm after a call: a rerun within it starts nothing
    carry_bytes: int  # the working tree and carried paths that travel
    files_back: int  # files that come back from $OUT ...
    file_bytes: int  # ... each at most this big ...
    folders_deep: int  # ... and at most this many folders below $OUT
    packages: frozenset[str]  # its Python distributions
    wheels: tuple[str, ...]  # what must travel, pinned


LENT = LentMachine(
    kinds="nvidia-h100-x1 or nvidia-h200 (one H100 80 GB or H200 141 GB)", python="3.12", torch="2.11",
    cores=16, lease_s=15 * 60, start_s=(60, 120), command_s=600, warm_s=30, carry_bytes=64 * MiB, files_back=8,
    file_bytes=16 * MiB, folders_deep=2,
    packages=frozenset("""
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
""".split()),
    # pure Python but pycocotools, which needs its cp312 manylinux wheel. polars, which Ultralytics imports at every
    # checkpoint save, is not here on purpose: its wheel (54 MB) cannot travel beside the data, and the sitting's
    # trainers never reach that import (steps.py)
    wheels=("ultralytics==8.4.190", "ultralytics-thop==2.2.3", "ultralytics-platform==0.1.99", "pycocotools==2.0.11"),
)

# Here a distribution may stand in for the lent machine's one of the same modules.
SAME_MODULES = {"opencv-python": "opencv-python-headless"}

REHEARSAL_ENV = "YOLO_INCEP_GPU_REHEARSAL"  # set: this process and its children import only what LENT has
NETWORK_REFUSED = "yolo-incep: network connection refused"  # the line every blocked attempt prints

PIP_DOWNLOAD = ("python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
                "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "
                "-d .gpu/wheels")


def normalize(dist: str) -> str:
    """A distribution name as pip compares them ('PyYAML' -> 'pyyaml', 'ultralytics_thop' -> 'ultralytics-thop')."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def allowed() -> frozenset[str]:
    """Distributions a process on the lent machine can import: the machine's and the travelling wheels'."""
    return LENT.packages | {normalize(w.split("==")[0]) for w in LENT.wheels}


def blocked_modules() -> frozenset[str]:
    """Top-level modules installed here whose distributions the lent machine would not have."""
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
            raise ModuleNotFoundError(f"No module named {fullname!r} (not on the GPU machine: {REHEARSAL_ENV} is "
                                      "set)", name=fullname)
        return None


def block_imports() -> None:
    """Under REHEARSAL_ENV, refuse every module the lent machine lacks (children inherit the variable, and block
    too)."""
    if os.environ.get(REHEARSAL_ENV) != "1" or any(isinstance(f, _Blocker) for f in sys.meta_path):
        return
    names = blocked_modules()
    loaded = sorted(n for n in names if n in sys.modules)
    if loaded:  # imported before the block: the rehearsal would not prove what it claims
        raise RuntimeError(f"{REHEARSAL_ENV}: {', '.join(loaded)} imported before the block was installed")
    sys.meta_path.insert(0, _Blocker(names))


def refuse_network() -> None:
    """Make every connection that would leave this machine, and every host lookup, fail at once, printing
    NETWORK_REFUSED with the address: the lent machine has no network (a connection there may hang until its
    timeout), and nothing of a sitting needs one. Unix sockets (process pools) and loopback still connect."""
    import socket

    if getattr(socket.socket.connect, "_refused", False):
        return
    plain_connect, plain_connect_ex, plain_lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def refuse(what) -> OSError:
        print(f"{NETWORK_REFUSED}: {what}", file=sys.stderr, flush=True)
        return ConnectionRefusedError(f"{NETWORK_REFUSED}: {what}")

    def local(sock, address) -> bool:
        return sock.family == socket.AF_UNIX or _loopback(address[0])

    def connect(self, address):
        if local(self, address):
            return plain_connect(self, address)
        raise refuse(address)

    def connect_ex(self, address):
        if local(self, address):
            return plain_connect_ex(self, address)
        raise refuse(address)

    def getaddrinfo(host, *args, **kwargs):
        if host in (None, "localhost") or _address(host) is not None:  # no lookup leaves the machine
            return plain_lookup(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, str(refuse(host)))

    connect._refused = True
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo


def _address(host):
    """The IP address `host` spells, None for a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return None


def _loopback(host) -> bool:
    address = _address(host) if isinstance(host, (str, bytes)) else None
    return host == "localhost" or (address is not None and address.is_loopback)


def enter() -> None:
    """What every process of a sitting does first: the rehearsal's import block, and no network."""
    block_imports()
    refuse_network()


def no_downloads(say) -> None:
    """Skip Ultralytics' two downloads while training, saying why with `say(line)`: the AMP check's yolo26n.pt
    and the dataset check's Arial font (for plots; the recipe plots nothing)."""
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer

    def amp_check(model) -> bool:
        say("AMP check skipped (Ultralytics' check downloads yolo26n.pt): AMP on, as the budget says")
        return True

    def font_check(font="Arial.ttf"):
        return None

    trainer.check_amp, data_utils.check_font = amp_check, font_check


def prepare_kit(dest: Path = Path(".gpu")) -> int:
    """`make gpu-kit`: the wheels of LENT and a copy of the VisDrone sample into `dest` (git-ignored, carried to the
    lent machine beside the checkout); prints what it holds against what may travel."""
    import shutil
    import subprocess

    from ..data.prepare import find_sample

    wheels = dest / "wheels"
    if wheels.exists():
        shutil.rmtree(wheels)  # one version of each: two stop the install there
    subprocess.run([*PIP_DOWNLOAD.split()[:-1], str(wheels), *LENT.wheels], check=True)
    sample = find_sample()
    copy = dest / sample.name
    if not copy.is_dir():
        shutil.copytree(sample, copy)  # a copy, not a link: a link travels as a link, without its files
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {size / MiB:.1f} MiB ({len(list(wheels.glob('*.whl')))} wheels, {copy.name}); the checkout's "
          f"tracked files travel with it: together at most {LENT.carry_bytes // MiB} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(prepare_kit())
