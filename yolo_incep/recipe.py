"""The small-object training recipe: budgets counted in optimizer steps, shared augmentation, trainer callbacks.

One owner for how yolo-incep trains on VisDrone-like data; `scripts/train_visdrone.py` (train your own models)
and `yolo_incep.bench` (the benchmark) both build their Ultralytics `train()` arguments here.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Budget:
    """What one budget spends; every arm of a comparison gets the same one."""

    imgsz: int  # train image size; tiles of `tile` px are trained at native resolution (imgsz <= tile)
    epochs: int
    batch: int
    fraction: float  # share of the train images used (Ultralytics takes the first ones)
    nbs: int  # nominal batch: Ultralytics accumulates nbs/batch batches per optimizer step; nbs = batch: one each
    optimizer: str
    lr0: float
    warmup_epochs: float  # Ultralytics warms up for max(warmup_epochs x batches per epoch, 100) batches
    close_mosaic: int  # last epochs without mosaic
    workers: int  # Ultralytics forces 0 on CPU
    device: str
    amp: bool
    cache: bool | str
    tile: int  # train on TILE-px native-resolution tiles of the train split (0: whole frames)
    compare_imgsz: int  # long side the untiled val frames are evaluated at (near 1:1 for VisDrone's 960-2000 px)
    slice: int  # SAHI slice size for the extra sliced evaluation row (0: none)

    def train_kwargs(self) -> dict:
        """The fields that are Ultralytics train() arguments."""
        evaluation = {"tile", "compare_imgsz", "slice"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in evaluation}


BUDGETS = {
    # Seconds: checks data, model, loss, checkpoint and evaluation end to end (CI).
    "smoke": Budget(imgsz=160, epochs=1, batch=8, fraction=0.02, nbs=8, optimizer="AdamW", lr0=0.001, warmup_epochs=0,
                    close_mosaic=0, workers=0, device="cpu", amp=False, cache=False, tile=320, compare_imgsz=480,
                    slice=0),
    # 2 CPU cores: 320-px native tiles of the shared sample's 239 train frames (4,732 tiles, 296 steps an epoch),
    # 6 epochs = 1,776 optimizer steps of 16 tiles. yolov8n takes ~0.72 s a step with both cores (~22 min), the P2
    # models ~1.4 s (~42 min). AdamW at 1e-3 is what Ultralytics itself picks for runs this short (optimizer=auto).
    "cpu": Budget(imgsz=320, epochs=6, batch=16, fraction=1.0, nbs=16, optimizer="AdamW", lr0=0.001, warmup_epochs=0.34,
                  close_mosaic=1, workers=0, device="cpu", amp=False, cache="ram", tile=320, compare_imgsz=1536,
                  slice=320),
    # One GPU, one sitting (bench/sitting.py): the cpu budget's data, recipe and evaluation, with batches of 32 and
    # as many epochs as the timing of the sitting's first epoch shows will fit (at most 100); every run of the grid
    # gets the same number. No sliced row: the GPU machine has no SAHI. (The lab adds its own budgets:
    # register_budget.)
    "gpu": Budget(imgsz=320, epochs=100, batch=32, fraction=1.0, nbs=32, optimizer="AdamW", lr0=0.001,
                  warmup_epochs=0.34, close_mosaic=2, workers=1, device="0", amp=True, cache="ram", tile=320,
                  compare_imgsz=1536, slice=0),
}


def register_budget(name: str, budget: Budget) -> None:
    """Add a budget (how experiments/ adds its study's); the same again does nothing, another under a taken name is an
    error."""
    if BUDGETS.get(name, budget) != budget:
        raise ValueError(f"register_budget: {name!r} is taken by another budget: {BUDGETS[name]}")
    BUDGETS[name] = budget


RECIPE = {
    "mosaic": 1.0,  # four tiles per sample: more small objects per batch and varied context
    "scale": 0.3,  # milder than the default 0.5: shrinking an 8-px pedestrian by half leaves nothing to learn
    "fliplr": 0.5,  # left-right symmetric scenes
    "flipud": 0.0,  # oblique drone views have a sky side: upside-down frames are not a plausible input
    "degrees": 0.0,  # rotation would loosen the axis-aligned boxes of tiny objects
    "mixup": 0.0,  # blending dense crowds makes tiny objects unreadable
    "cos_lr": True,
    "momentum": 0.9,
    "warmup_bias_lr": 0.0,  # as Ultralytics sets it for AdamW
    "pretrained": False,  # offline: no downloaded weights; YAML models start from scratch
    "plots": False,
    "val": False,  # the benchmark evaluates the final checkpoint with `compare`, on whole frames
    "deterministic": True,
}


def optimizer_steps(n_images: int, budget: Budget) -> int:
    """Optimizer steps the budget takes on n_images (Ultralytics keeps a last partial batch)."""
    accumulate = max(round(budget.nbs / budget.batch), 1)
    return math.ceil(round(n_images * budget.fraction) / budget.batch) * budget.epochs // accumulate


def p2_variant(model: str) -> str:
    """'yolov8n.yaml' -> 'yolov8n-p2.yaml': adds the stride-4 head that sees objects a few pixels wide."""
    path = Path(model)
    return model if path.stem.endswith("-p2") else str(path.with_name(f"{path.stem}-p2{path.suffix}"))


def max_objects(data_yaml: Path) -> int:
    """The largest number of labelled objects in one image of the dataset's train and val splits."""
    from .data.yolo import label_path, read_data_yaml, read_labels

    data = read_data_yaml(data_yaml)
    labels = (label_path(image) for split in ("train", "val") if data.config.get(split) for image in data.images(split))
    return max((len(read_labels(p)) for p in labels if p.is_file()), default=0)


def train_args(budget: Budget, data_yaml: Path, project: Path, name: str, seed: int = 0) -> dict:
    """Ultralytics train() keyword arguments for one run of the recipe."""
    args = {**budget.train_kwargs(), **RECIPE, "data": str(data_yaml), "project": str(Path(project).resolve()),
            "name": name, "exist_ok": True, "seed": seed}
    if budget.device != "cpu":  # deterministic CUDA kernels cost speed; runs are seeded, not bit-reproducible there
        args["deterministic"] = False
    # VisDrone frames hold up to ~900 objects: the default 300 detections per image would cap recall.
    args["max_det"] = max(300, math.ceil(max_objects(data_yaml) * 1.2 / 100) * 100)
    return args


def checkpoint_epoch(last: Path) -> int | None:
    """The last completed epoch (0-based) of an unfinished run's last.pt; -1 once finished; None without one."""
    if not Path(last).is_file():
        return None
    import torch

    return torch.load(last, map_location="cpu", weights_only=False).get("epoch", -1)  # strip_optimizer sets -1


def run_state(epoch: int | None) -> str:
    """'fresh' (no last.pt), 'resume' (an interrupted or paused run) or 'done' (Ultralytics stripped it at the end),
    from `checkpoint_epoch`."""
    return "fresh" if epoch is None else "done" if epoch < 0 else "resume"


def checkpoint_state(last: Path) -> str:
    """The `run_state` of a last.pt."""
    return run_state(checkpoint_epoch(last))


THREADS_ENV = "YOLO_INCEP_THREADS"


def cpu_threads() -> int:
    """Torch threads for CPU training: $YOLO_INCEP_THREADS (e.g. 1 per run when runs share the cores), else all."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        from .errors import InputError

        raise InputError(f"${THREADS_ENV}={value!r}: expected a positive whole number of threads")
    return int(value)


class Pause(Exception):
    """Raised after an epoch's checkpoint is saved once a sitting's time is up; rerun to resume from last.pt."""


def add_callbacks(yolo, log: Path | None = None, sitting_minutes: float = 0) -> None:
    """All CPU cores for torch, a per-step loss log (JSONL) and an optional per-sitting time limit."""
    threads = cpu_threads()  # read before training: a bad value fails at once

    def use_all_cores(trainer) -> None:
        # Ultralytics sets torch to cpu_count - 1 threads for CPU training: on 2 cores that is 1, and the step
        # takes 1.7x as long (1.22 vs 0.72 s for yolov8n at 320, batch 16); data loading runs in the same process.
        if trainer.device.type == "cpu":
            import torch

            torch.set_num_threads(threads)

    start = time.monotonic()
    epoch_start = [start]

    def log_step(trainer) -> None:
        if log is None:
            return
        # box, cls, dfl of this batch. 3 decimals (4 digits of a loss near 1-5) and 0.1 s: a kept step log is a
        # third smaller in xz than at 5 decimals and 0.01 s, and the tree keeps every run's (6 MiB in all)
        items = [round(float(v), 3) for v in trainer.loss_items.values()]
        line = {"epoch": trainer.epoch, "lr": round(trainer.optimizer.param_groups[0]["lr"], 7), "loss": items,
                "t": round(time.monotonic() - start, 1)}
        with open(log, "a") as f:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")

    def maybe_pause(trainer) -> None:
        now = time.monotonic()
        epoch_s, epoch_start[0] = now - epoch_start[0], now
        last_epoch = trainer.epoch + 1 >= trainer.epochs
        if sitting_minutes and not last_epoch and now - start + epoch_s > sitting_minutes * 60:
            raise Pause(f"paused after epoch {trainer.epoch + 1}/{trainer.epochs}; rerun to resume")

    yolo.add_callback("on_pretrain_routine_end", use_all_cores)
    yolo.add_callback("on_train_batch_end", log_step)
    yolo.add_callback("on_fit_epoch_end", maybe_pause)  # last.pt of this epoch is saved by then


def budget_dict(budget: Budget) -> dict:
    """The budget and recipe as one JSON-ready record."""
    return asdict(budget) | {"recipe": RECIPE}
