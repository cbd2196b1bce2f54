"""A study of the user's own for `yolo-incep bench`: any YOLO dataset (`--data`), any models (`--models`: YAMLs, or
checkpoints to fine-tune from), seeds and one budget in epochs or optimizer steps, made into a grid and a budget that
the benchmark trains and compares as it does its VisDrone presets (docs/bench.md). Everything here is checked before
anything trains: a bad argument is one line naming it.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

from .. import recipe
from ..errors import InputError, one_line
from .grids import GridArm

# The recipe of the CPU protocol (AdamW at 1e-3, its warm-up, the small-object augmentation) with the study's image
# size, batch and length: the settings whose VisDrone results docs/results.md reports.
BASE = "cpu"


@dataclass(frozen=True)
class Dataset:
    """A study's dataset as checked: its YAML, class names and train images."""

    yaml: Path
    names: list[str]
    train_images: int


def dataset(data: str) -> Dataset:
    """The --data YAML with a train and a val split that hold images; else an InputError naming what is missing."""
    from ..data.yolo import read_data_yaml

    cfg = read_data_yaml(data)
    for split in ("train", "val"):
        if cfg.config.get(split) is None:
            raise InputError(f"--data {data}: no '{split}' split: a study trains on 'train' and scores on 'val'")
    cfg.images("val")  # raises when the split holds no images
    return Dataset(cfg.file.resolve(), cfg.names, len(cfg.images("train")))


def check_model(model: str, nc: int = 10) -> None:
    """A model YAML builds (on the CPU, a second or so) or a checkpoint loads: a missing or broken model is named
    before anything trains; nothing is downloaded."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if model.endswith(".pt"):
                from ultralytics.nn.tasks import load_checkpoint

                if not Path(model).is_file():
                    raise FileNotFoundError("no such file (nothing is downloaded)")
                load_checkpoint(model)
            else:
                from ..cost import build_model

                build_model(model, nc=nc)
    except Exception as e:  # noqa: BLE001 - any failure is the model's, and is named with it
        raise InputError(f"model {model}: does not {'load' if model.endswith('.pt') else 'build'} "
                         f"({one_line(e)})") from None


def arms(models: list[str], seeds: list[int] | None, versus: list[str], nc: int) -> tuple[GridArm, ...]:
    """--models as grid arms ('[NAME=]MODEL', named after the file otherwise), each trained with every seed; the
    first is the baseline, `versus` ('ARM=REF') adds paired differences between others."""
    from ..eval.compare import parse_versus
    from ..eval.models import parse_arms

    parsed = parse_arms(models)
    for a in parsed:
        if len(a.sources) != 1:
            raise InputError(f"--models {a.name}={','.join(a.sources)}: one model per name; the seeds come from "
                             "--seeds")
    pairs = parse_versus(versus)
    names = [a.name for a in parsed]
    for a, r in pairs.items():
        unknown = next((n for n in (a, r) if n not in names), None)
        if unknown or a == r:
            raise InputError(f"--versus {a}={r}: " + (f"{unknown} is not one of --models ({', '.join(names)})"
                                                      if unknown else "a model against itself"))
    for a in parsed:
        check_model(a.sources[0], nc)
    return tuple(GridArm(a.name, a.sources[0], tuple(seeds or (0,)), pairs.get(a.name)) for a in parsed)


def budget(data: Dataset, imgsz: int, batch: int, epochs: int | None, steps: int | None, device: str) -> recipe.Budget:
    """The study's budget: the CPU protocol's recipe with its image size, batch (one optimizer step each: nbs =
    batch) and length. `steps` becomes the whole epochs nearest to it (at least one): every run stops where
    Ultralytics ends a run, after its last epoch, with the steps bench.json states."""
    if (epochs is None) == (steps is None):
        raise InputError("--data: give the budget, --epochs N or --steps N (one of them)")
    for flag, value, low in (("--imgsz", imgsz, 32), ("--batch", batch, 1), ("--epochs", epochs, 1),
                             ("--steps", steps, 1)):
        if value is not None and value < low:
            raise InputError(f"{flag} {value}: must be {low} or more")
    if imgsz % 32:
        raise InputError(f"--imgsz {imgsz}: must be a multiple of 32 (the models' largest stride)")
    if steps is not None:
        epochs = max(1, round(steps / math.ceil(data.train_images / batch)))
    gpu = device != "cpu"
    return replace(recipe.BUDGETS[BASE], imgsz=imgsz, epochs=epochs, batch=batch, nbs=batch, fraction=1.0,
                   close_mosaic=epochs // 6, workers=2 if gpu else 0, device=device, amp=gpu, cache=False, tile=0,
                   compare_imgsz=imgsz, slice=0)


def slots(device: str, runs_per_gpu: int) -> list[str]:
    """The device slots runs are spread over: each device of `device` ('0,1,2,3', 'cpu') `runs_per_gpu` times,
    as CUDA_VISIBLE_DEVICES values or 'cpu'; a device this machine lacks is refused."""
    from ..limits import check_device

    if runs_per_gpu < 1:
        raise InputError(f"--runs-per-gpu {runs_per_gpu}: must be 1 or more")
    given = [d.strip() for d in device.split(",") if d.strip()]
    for d in given:
        check_device(d)
    devices = [d.removeprefix("cuda:") for d in given]
    if not devices or ("cpu" in devices and len(devices) > 1):
        raise InputError(f"--device {device}: expected cpu, or GPU indices such as 0,1,2,3")
    if len(set(devices)) != len(devices):
        raise InputError(f"--device {device}: a GPU named twice; several runs share a GPU with --runs-per-gpu")
    return [d for d in devices for _ in range(runs_per_gpu)]


def default_device() -> str:
    """The first GPU where there is one, else the CPU (as Ultralytics chooses)."""
    import torch

    return "0" if torch.cuda.is_available() else "cpu"
