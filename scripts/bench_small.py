"""Small-object benchmark on the shared VisDrone sample: convert, split by sequence, tile, train four models, compare.

    python scripts/bench_small.py --budget smoke|cpu|gpu [--device cpu|0] [--out docs/results/bench_small_<budget>]

Every model trains with the same seed and budget on 640-px tiles of the train sequences, then `yolo-incep compare`
evaluates them on the untiled val images. The report (JSON, CSV, PNG) and bench.json (budget, command, stage times)
land in --out; the bulky intermediates (dataset, runs, predictions) stay in --work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import train_visdrone as recipe  # the training recipe beside this script
from yolo_incep import cli
from yolo_incep.data.prepare import find_sample
from yolo_incep.eval import compare
from yolo_incep.data.common import atomic_write_bytes

MODELS = ("yolov8n.yaml", "yolov8n-p2.yaml", "yolov8n-incep.yaml", "yolov8n-incep-p2.yaml")  # baseline first
TILE = 640
# The training recipe's budgets (scripts/train_visdrone.py), trimmed so that four models fit the budget's time:
# `cpu` trains 3 epochs on 30% of the train tiles (about 45 min on 2 cores). Training runs on native-resolution
# tiles (imgsz = TILE); compare_imgsz is the long side the untiled val frames (960-1920 px) are evaluated at.
BUDGETS = {
    "smoke": (recipe.BUDGETS["smoke"], dict(compare_imgsz=480, val_images=6, slice=0)),
    "cpu": (replace(recipe.BUDGETS["cpu"], epochs=3, fraction=0.3, close_mosaic=1),
            dict(compare_imgsz=1280, val_images=0, slice=0)),
    "gpu": (replace(recipe.BUDGETS["gpu"], epochs=60, close_mosaic=10),
            dict(compare_imgsz=1920, val_images=0, slice=TILE)),
}


def step(name: str, argv: list[str]) -> None:
    """Run one yolo-incep subcommand in-process; stop the benchmark if it fails."""
    print(f"bench_small: yolo-incep {' '.join(argv)}", flush=True)
    if cli.main(argv) != 0:
        sys.exit(f"bench_small: {name} failed")


def val_subset(data: Path, n: int) -> Path:
    """A data YAML whose val split is the first n val images (as a .txt list), for the smoke budget."""
    import yaml

    cfg = yaml.safe_load(data.read_text())
    images = sorted((Path(cfg["path"]) / cfg["val"]).glob("*.jpg"))[:n]
    listing = data.parent / f"val_first{n}.txt"
    atomic_write_bytes(listing, "".join(f"{p}\n" for p in images))
    out = data.parent / f"data_val{n}.yaml"
    atomic_write_bytes(out, yaml.safe_dump(cfg | {"val": str(listing)}, sort_keys=False))
    return out


def train(model: str, data: Path, budget: recipe.Budget, device: str, project: Path) -> Path:
    """Train one model from scratch with the recipe; returns its last checkpoint (the budget's end, not a pick)."""
    from ultralytics import YOLO

    args = recipe.train_args(replace(budget, imgsz=min(budget.imgsz, TILE), device=device), data,
                             recipe.max_objects(data), project)
    yolo = YOLO(model)
    yolo.train(**args, name=Path(model).stem, val=False, verbose=False)
    return Path(yolo.trainer.save_dir) / "weights" / "last.pt"  # where Ultralytics really put it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--device", default="cpu", help="cpu, 0, cuda:0 (default: cpu)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: runs/bench_small/<budget>)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: docs/results/bench_small_<budget>)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="model YAMLs, baseline first")
    args = parser.parse_args(argv)
    budget, evaluation = BUDGETS[args.budget]
    work = args.work or Path("runs/bench_small") / args.budget
    out = args.out or Path("docs/results") / f"bench_small_{args.budget}"
    times: dict[str, float] = {}

    t = time.perf_counter()
    step("convert", ["convert", "visdrone", str(find_sample() / "VisDrone2019-DET-train"), str(work / "visdrone"),
                     "--val-fraction", "0.2", "--seed", "0"])
    step("tile", ["tile", str(work / "visdrone"), str(work / "tiles"), "--size", str(TILE), "--overlap", "0.2",
                  "--splits", "train"])
    times["data_s"] = time.perf_counter() - t

    checkpoints = []
    for model in args.models:
        t = time.perf_counter()
        last = train(model, work / "tiles/data.yaml", budget, args.device, work / "runs")
        checkpoints.append(f"{Path(model).stem}={last}")
        times[f"train_{Path(model).stem}_s"] = time.perf_counter() - t

    t = time.perf_counter()
    data = work / "visdrone/data.yaml"
    if evaluation["val_images"]:
        data = val_subset(data, evaluation["val_images"])
    report = compare.compare_models(checkpoints, data, imgsz=evaluation["compare_imgsz"], out=work / "compare",
                                    device=args.device, slice_size=evaluation["slice"])
    times["compare_s"] = time.perf_counter() - t

    for name in ("report.json", "report.csv", "ap_by_size.png"):
        atomic_write_bytes(out / name, (work / "compare" / name).read_bytes())
    bench = {"command": " ".join(["python", "scripts/bench_small.py", *(argv if argv is not None else sys.argv[1:])]),
             "budget": args.budget, "settings": asdict(budget) | evaluation | {
                 "recipe": recipe.RECIPE, "tile": TILE, "tile_overlap": 0.2, "val_fraction": 0.2, "models": args.models},
             "times_s": {k: round(v, 1) for k, v in times.items()}, "versions": _versions()}
    atomic_write_bytes(out / "bench.json", json.dumps(bench, indent=2))
    print(compare.format_table(report))
    print(f"bench_small: wrote {out}")
    return 0


def _versions() -> dict[str, str]:
    """Versions that decide the numbers."""
    import torch
    import ultralytics

    import yolo_incep

    return {"yolo_incep": yolo_incep.__version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}


if __name__ == "__main__":
    sys.exit(main())
