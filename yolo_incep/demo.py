"""`yolo-incep demo`: the whole job on an embedded, deterministic, synthetic small-object dataset (no download).

Builds yolov8n and yolov8n-incep, trains both with the same seed and budget on CPU, then evaluates both with
`yolo-incep compare` (COCO AP, AP_small, params, GFLOPs, latency) and prints them side by side.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .files import LOCK_NAME, atomic_write_bytes, folder_lock
from .data.yolo import format_labels, write_data_yaml

CLASSES = ("disc", "square", "triangle")
BATCH = 8  # training batch
OUTPUTS = ("data", "runs", "compare")  # what a demo writes into its --out
COLORS = ((40, 40, 220), (40, 190, 40), (220, 120, 30))  # BGR, one per class: easy enough for minutes of CPU training


def _draw(img: np.ndarray, cls: int, cx: float, cy: float, size: int, color) -> None:
    import cv2

    r = size / 2
    if cls == 0:
        cv2.circle(img, (round(cx), round(cy)), round(r), color, -1, cv2.LINE_AA)
    elif cls == 1:
        cv2.rectangle(img, (round(cx - r), round(cy - r)), (round(cx + r) - 1, round(cy + r) - 1), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def make_synthetic_dataset(root: Path, n_train: int = 96, n_val: int = 24, imgsz: int = 256, seed: int = 0,
                           on_change: Callable[[], None] | None = None) -> Path:
    """Write a YOLO dataset of small shapes on cluttered backgrounds; returns its data.yaml. Same seed, same bytes.
    `on_change` is called before a file changes (Journal.begin)."""
    import cv2

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(n):
            base = rng.integers(60, 180, 3)
            img = np.clip(base + rng.normal(0, 12, (imgsz, imgsz, 3)), 0, 255).astype(np.uint8)
            for _ in range(int(rng.integers(3, 8))):  # low-contrast clutter rectangles, not objects
                x, y = rng.integers(0, imgsz, 2)
                w, h = rng.integers(10, 60, 2)
                shade = tuple(int(c) for c in np.clip(base + rng.integers(-25, 25, 3), 0, 255))
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), shade, -1)
            rows = []
            for _ in range(int(rng.integers(4, 13))):
                cls = int(rng.integers(0, len(CLASSES)))
                size = int(rng.choice([rng.integers(8, 24), rng.integers(24, 44)], p=[0.8, 0.2]))  # mostly < 32 px
                size = min(size, imgsz // 2 - 1)  # room for the shape at a small --imgsz; none changes from 88 px
                cx, cy = rng.uniform(size, imgsz - size, 2)
                color = tuple(int(c) for c in np.clip(np.array(COLORS[cls]) + rng.integers(-20, 20, 3), 0, 255))
                _draw(img, cls, cx, cy, size, color)
                rows.append((cls, (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)))
            atomic_write_bytes(root / "images" / split / f"{split}_{k:04d}.png", cv2.imencode(".png", img)[1].tobytes(),
                               on_change)
            atomic_write_bytes(root / "labels" / split / f"{split}_{k:04d}.txt", format_labels(rows, imgsz, imgsz),
                               on_change)
    return write_data_yaml(root, {"train": "images/train", "val": "images/val"}, list(CLASSES))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/yolo-incep-demo", help="output folder (dataset, runs, report)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per model")
    p.add_argument("--imgsz", type=int, default=256, help="train/eval image size")
    p.add_argument("--models", nargs="+", default=["yolov8n.yaml", "yolov8n-incep.yaml"], help="baseline first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would fail only after the dataset is written and a model trained."""
    from .data.yolo import refuse_inside_dataset
    from .errors import InputError
    from .limits import check_device, check_image_memory
    from .swap import load_source

    if args.imgsz < 32:
        raise InputError(f"--imgsz {args.imgsz}: must be at least 32 (the models' largest stride)")
    if args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: must be at least 1")
    refuse_inside_dataset(Path(args.out), "--out")
    check_device(args.device)
    # drawing one image holds ~3 float64 copies of it (72 B/px); training holds a batch of BATCH
    check_image_memory(args.imgsz, BATCH, extra_per_pixel=72)
    for name in args.models:
        if Path(name).suffix == ".pt":
            if not Path(name).is_file():
                raise InputError(f"--models {name}: no such checkpoint file")
        else:
            load_source(name)  # a model YAML file or name, with rows of layers that exist


def run(args: argparse.Namespace) -> int:
    check_args(args)
    out = Path(args.out).resolve()
    with folder_lock(out, flag="--out"):  # one demo per folder: another would read this one's half-written checkpoints
        _clear_earlier_demo(out, args.out)
        return _demo(args, out)


def _clear_earlier_demo(out: Path, shown: str) -> None:
    """Remove an earlier demo's trainings from `out` (its dataset is rewritten, its comparison replaced), so that the
    folder never holds two demos' runs; a folder holding anything a demo does not write is refused, not emptied."""
    from .errors import InputError

    other = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS and p.name != LOCK_NAME)
    if other:
        raise InputError(f"--out {shown}: holds {other[0]!r}, which no demo writes: choose an empty folder or an "
                         f"earlier demo's")
    if (out / "runs").is_dir():
        shutil.rmtree(out / "runs")


def _demo(args: argparse.Namespace, out: Path) -> int:
    from ultralytics import YOLO

    from .data.journal import Journal
    from .eval.compare import compare_models, format_table

    t0 = time.perf_counter()
    journal = Journal(out / "data", "demo", shlex.join(["yolo-incep", "demo", "--out", str(out), "--imgsz",
                                                         str(args.imgsz), "--seed", str(args.seed)]))
    data = make_synthetic_dataset(out / "data", imgsz=args.imgsz, seed=args.seed, on_change=journal.begin)
    journal.done()
    print(f"[demo] synthetic dataset (3 shape classes, mostly < 32 px, NOT real imagery): {data}")
    weights = []
    for i, name in enumerate(args.models, 1):
        print(f"[demo] {i}/{len(args.models)} training {name} for {args.epochs} epochs at {args.imgsz} on {args.device}")
        model = YOLO(name)
        # tiny data, few steps: no mosaic and a brisk AdamW learning rate make AP appear within minutes of CPU training
        model.train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=BATCH, device=args.device, workers=0,
                    seed=args.seed, deterministic=True, project=str(out / "runs"), name=Path(name).stem,
                    exist_ok=True, plots=False, amp=False, mosaic=0.0, optimizer="AdamW", lr0=0.004, warmup_epochs=1,
                    patience=0, verbose=False)
        weights.append(f"{Path(name).stem}={model.trainer.best}")
    print("[demo] evaluating both models on the same val images (COCO AP via pycocotools)")
    report = compare_models(weights, str(data), split="val", imgsz=args.imgsz, out=out / "compare", device=args.device)
    print(format_table(report))
    print(f"[demo] report: {out / 'compare' / 'report.json'}; total {time.perf_counter() - t0:.0f} s")
    print(f"[demo] {args.epochs} CPU epochs on synthetic shapes check the pipeline end to end; they say nothing about"
          " which model is better on real aerial imagery (for VisDrone: `yolo-incep bench --help`).")
    return 0
