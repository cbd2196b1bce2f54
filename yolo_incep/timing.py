"""One timing loop for the benchmark scripts: interleaved repetitions, medians, GPU-aware wall time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

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
