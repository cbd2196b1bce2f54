"""Cost of a model for `compare`: parameters, GFLOPs and the latency of a fused forward pass."""

from __future__ import annotations

import copy
import statistics
import time


def model_cost(model, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs at imgsz x imgsz) of the unfused model, as Ultralytics' model.info() reports them."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    return get_num_params(model), round(float(get_flops(model, imgsz)), 3)


def latency_ms(model, imgsz: int, device: str, warmup: int = 3, runs: int = 10) -> float:
    """Median ms of one fused forward pass of a 1 x 3 x imgsz x imgsz batch on `device`, after warm-up."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    m = copy.deepcopy(model).to(dev).eval()
    m = m.fuse(verbose=False) if hasattr(m, "fuse") else m
    x = torch.rand(1, 3, imgsz, imgsz, device=dev)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = time.perf_counter()
            m(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def device_name(device: str) -> str:
    """The device as torch names it, with the GPU model or the CPU thread count."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"{dev} ({torch.get_num_threads()} threads)"
