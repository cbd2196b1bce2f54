"""What this machine reports now (cores, memory, /dev/shm, disk, GPU memory), and the plan of a sitting's runs
from it: how many run at once, their torch threads, loader workers and image cache. A shortfall changes the plan
(no loader workers, a disk cache or none, fewer runs) before anything trains, rather than failing midway."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

GiB = 2**30
# GPU memory of one run at batch 32 and 320 px (CUDA context, weights, optimizer, activations under AMP), scaled by
# batch x pixels for other settings. An estimate: no sitting has measured it yet (each run's bench.json record
# gains its measured peak, `gpu_peak_gib`, which should replace this figure).
GPU_GIB_AT_32x320 = 3.0
GPU_CONTEXT_GIB = 0.6  # of that, the CUDA context, whatever the batch
SHM_BATCHES = 4  # batches one loader worker may hold in /dev/shm (Ultralytics' prefetch, with room)
RAM_SHARE = 0.5  # of the available memory, what the runs' image caches may take together


@dataclass(frozen=True)
class Machine:
    """This machine now; None where it cannot tell (no GPU, no /dev/shm)."""

    cores: int
    ram_free: int
    shm_free: int | None
    disk_free: int
    gpu: str | None
    gpu_free: int | None

    def describe(self) -> dict:
        return asdict(self)


def measure(work: Path, device: str) -> Machine:
    """Read what this machine offers a sitting whose scratch folder is `work`, on `device` ('cpu' or an index)."""
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    shm = Path("/dev/shm")
    gpu, gpu_free = _gpu(device)
    return Machine(cores, int(psutil.virtual_memory().available), shutil.disk_usage(shm).free if shm.is_dir() else None,
                   shutil.disk_usage(work).free, gpu, gpu_free)


def _gpu(device: str) -> tuple[str | None, int | None]:
    """Name and free memory of the sitting's GPU, from nvidia-smi (the parent never opens a CUDA context itself)."""
    if device == "cpu":
        return None, None
    index = device.rpartition(":")[2] or "0"
    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=name,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
        name, free = out.stdout.strip().rsplit(",", 1)
        return name.strip(), int(float(free)) * 2**20
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi did not answer)", None


@dataclass(frozen=True)
class Plan:
    """How a sitting's runs share this machine, and why (`notes`: each shortfall and what it changed)."""

    runs: int
    threads: int
    workers: int
    cache: bool | str
    gpu_gib_per_run: float | None
    notes: tuple[str, ...]

    def describe(self) -> dict:
        return asdict(self) | {"notes": list(self.notes)}


def plan(machine: Machine, runs: int, batch: int, imgsz: int, workers: int, cache: bool | str,
         train_images: int, gpu: bool) -> Plan:
    """The plan for `runs` runs of the budget's `batch` and `imgsz` on `train_images` images, at most `workers`
    loader workers and the budget's `cache` each."""
    notes = []
    if runs > machine.cores:
        notes.append(f"{runs} runs on {machine.cores} cores: the first {machine.cores} run (one core per trainer)")
        runs = machine.cores
    need = None
    if gpu:
        need = round(GPU_CONTEXT_GIB + (GPU_GIB_AT_32x320 - GPU_CONTEXT_GIB) * batch * imgsz**2 / (32 * 320**2), 1)
        if machine.gpu_free is not None:
            fit = max(1, int(0.9 * machine.gpu_free / GiB / need))
            if runs > fit:
                notes.append(f"GPU memory for {fit} runs of ~{need} GiB: the first {fit} run")
                runs = fit
        else:
            notes.append("GPU memory unknown: not planned")
    threads = max(1, machine.cores // runs)
    workers = min(workers, machine.cores // runs - 1) if gpu else 0  # Ultralytics loads in the trainer on the CPU
    workers = max(0, workers)
    shm_need = runs * workers * SHM_BATCHES * batch * imgsz**2 * 3
    if workers and machine.shm_free is not None and shm_need > machine.shm_free:
        notes.append(f"/dev/shm holds {machine.shm_free / GiB:.2f} GiB, loader workers need {shm_need / GiB:.2f}: "
                     "no loader workers")
        workers = 0
    image_bytes = train_images * imgsz**2 * 3
    if cache == "ram" and runs * image_bytes * 1.1 > RAM_SHARE * machine.ram_free:
        cache = "disk" if image_bytes * 1.5 < machine.disk_free else False
        notes.append(f"RAM caches of {runs} runs ({runs * image_bytes / GiB:.1f} GiB) exceed {RAM_SHARE:.0%} of the "
                     f"{machine.ram_free / GiB:.1f} GiB free: cache {cache}")
    return Plan(runs, threads, workers, cache, need, tuple(notes))


def plan_line(machine: Machine, p: Plan) -> str:
    """The plan as one log line."""
    shm = "no /dev/shm" if machine.shm_free is None else f"/dev/shm {machine.shm_free / GiB:.1f} GiB"
    gpu = f", GPU {machine.gpu}" + (f" {machine.gpu_free / GiB:.0f} GiB free" if machine.gpu_free else "") \
        if machine.gpu else ""
    share = f", ~{p.gpu_gib_per_run} GiB GPU memory each (estimate)" if p.gpu_gib_per_run else ""
    why = f" ({'; '.join(p.notes)})" if p.notes else ""
    return (f"{machine.cores} cores, {machine.ram_free / GiB:.1f} GiB RAM free, {shm}{gpu} -> {p.runs} runs, "
            f"{p.threads} torch thread(s) and {p.workers} loader worker(s) each, cache {p.cache}{share}{why}")
