"""Model cost for `compare`, scripts/ and the protocol: params / GFLOPs, fused latency by one timing loop (interleaved
medians), and the JSON benchmark scripts print. Imports no benchmark: `compare` uses it as any script does."""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict[str, Callable[[], object]], reps: int,
                        device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn within every repetition after a warm-up.

    Interleaving (A B C A B C ...) makes load from other processes on shared cores hit every variant alike, so
    ratios of these medians stay meaningful on a busy machine where absolute times do not.
    """
    inner = {}
    for name, fn in fns.items():  # warm up, then pick a call count that makes one sample last >= 20 ms
        fn(), fn()
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        inner[name] = max(1, min(50, int(0.02 / max(time.perf_counter() - start, 1e-6))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - start) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def build_model(name: str, nc: int | None = None):
    """A DetectionModel from a YAML name with seed-0 random weights (nothing is downloaded); nc None: the YAML's."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel(name, nc=nc, verbose=False)


def fused_forward(model, imgsz: int, device: torch.device, batch: int = 1, half: bool = False,
                  channels_last: bool = False) -> Callable[[], object]:
    """Inference as Ultralytics runs it: a fused copy in eval and inference mode; batch 1 unless asked; `half`: fp16
    weights and input (as `half=True` predicts); `channels_last`: NHWC weights and input."""
    m = copy.deepcopy(model).to(device).eval()
    m = m.fuse(verbose=False) if hasattr(m, "fuse") else m
    dtype = torch.half if half else torch.float
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = m.to(dtype=dtype, memory_format=fmt)
    x = torch.rand(batch, 3, imgsz, imgsz, device=device, dtype=dtype).contiguous(memory_format=fmt)

    def run():
        with torch.inference_mode():
            return m(x)

    return run


def latency_ms(model, imgsz: int, device: str, reps: int = 10) -> float:
    """Median ms of one fused batch-1 forward pass at imgsz x imgsz on `device`."""
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    return round(interleaved_medians({"m": fused_forward(model, imgsz, dev)}, reps, dev)["m"] * 1e3, 3)


def model_cost(model, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs at imgsz x imgsz) of the unfused model, as Ultralytics' model.info() reports them."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    return get_num_params(model), round(float(get_flops(model, imgsz)), 3)


def device_name(device: str) -> str:
    """The device as torch names it, with the GPU model or the CPU thread count."""
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"{dev} ({torch.get_num_threads()} threads)"


def emit_json(data: dict, path: Path | None) -> None:
    """Print the JSON and, if asked, write it to a file atomically (no half-written output)."""
    from .files import atomic_write_bytes

    text = json.dumps(data, indent=1)
    print(text)
    if path is not None:
        atomic_write_bytes(path, text + "\n")
