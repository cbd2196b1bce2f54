"""What a run asks of this machine, checked before any work: a device that exists, memory for its image batches."""

from __future__ import annotations

from .errors import InputError

# Bytes per pixel of one letterboxed input image before the network sees it: 3 uint8 channels, then 3 float32 ones.
# A lower bound (activations come on top), so anything refused here could never have run.
INPUT_BYTES_PER_PIXEL = 3 * (1 + 4)


def check_device(device: str | None, flag: str = "--device") -> None:
    """An InputError naming `flag` when Ultralytics could not run on `device` ('' and None: its own choice)."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    if device is None or str(device).strip() in {"", "cpu"}:
        return
    n = torch.cuda.device_count()
    valid = "cpu" + (f" or 0..{n - 1}" if n else "")
    try:
        chosen = select_device(device, verbose=False)
    except ValueError:
        raise InputError(f"{flag} {device}: no such device on this machine (torch sees {n} CUDA GPU(s)); "
                         f"use {flag} {valid}") from None
    if getattr(chosen, "type", None) == "cpu":  # Ultralytics falls back to the CPU without a word for 'mps'
        raise InputError(f"{flag} {device}: no such device on this machine (torch sees no Apple MPS device, "
                         f"{n} CUDA GPU(s)); use {flag} {valid}")


def available_memory() -> int:
    """Bytes of memory this machine can give a new allocation now."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_image_memory(imgsz: int, images: int, flag: str = "--imgsz", extra_per_pixel: float = 0) -> None:
    """An InputError naming `flag` when `images` inputs of `imgsz` x `imgsz` px cannot fit in the available memory.

    `extra_per_pixel`: bytes per pixel of one image that the command allocates besides its batch (demo's drawing)."""
    need = imgsz * imgsz * (images * INPUT_BYTES_PER_PIXEL + extra_per_pixel)
    have = available_memory()
    if need > have:
        side = int((have / (images * INPUT_BYTES_PER_PIXEL + extra_per_pixel)) ** 0.5) // 32 * 32
        raise InputError(f"{flag} {imgsz}: {images} image(s) of {imgsz}x{imgsz} px need at least {need / 2**30:.1f} "
                         f"GiB, more than the {have / 2**30:.1f} GiB available; at most about {side} here")
