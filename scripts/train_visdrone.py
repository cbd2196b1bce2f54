#!/usr/bin/env python
"""Train models with the small-object recipe (yolo_incep/recipe.py) on VisDrone-like data.

    python scripts/train_visdrone.py --budget smoke                          # seconds, the shared sample
    python scripts/train_visdrone.py --budget cpu --p2                       # 2 CPU cores: 1,776 steps, 20-45 min
    python scripts/train_visdrone.py --budget gpu --data VisDrone-root --sitting-minutes 9   # rerun until done

Models default to yolov8n.yaml and yolov8n-incep.yaml; --p2 swaps each for its '-p2' variant. --data takes
'sample' (the shared sample, converted and split by sequence on first use), a data YAML, or a converted dataset
root, whose train split is cut into the budget's native-resolution tiles. A run interrupted (or paused by
--sitting-minutes) resumes from its last.pt when the same command runs again. Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yolo_incep import recipe


def resolve_data(data: str, tile: int, work: Path) -> Path:
    """A data YAML for Ultralytics: the prepared sample, a given YAML, or ROOT/data.yaml; train split tiled."""
    from yolo_incep.data.prepare import prepare_sample
    from yolo_incep.data.tile import tile_dataset

    if data == "sample":
        root = work / "visdrone-sample"
        prepare_sample(root)
    elif data.endswith((".yaml", ".yml")):
        return Path(data)  # used as it is: tile it yourself with `yolo-incep tile`
    else:
        root = Path(data)
    if not tile:
        return root / "data.yaml"
    tiled = work / f"{root.name}-tiles{tile}"
    print(tile_dataset(root, tiled, size=tile, overlap=0.2, splits=["train"]))
    return tiled / "data.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=recipe.BUDGETS, default="smoke")
    parser.add_argument("--model", action="append", help="model YAML (repeatable; default yolov8n and yolov8n-incep)")
    parser.add_argument("--p2", action="store_true", help="use the -p2 variant of each model (stride-4 head)")
    parser.add_argument("--data", default="sample", help="'sample', a data YAML, or a converted dataset root")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=Path, default=Path("runs/visdrone"))
    parser.add_argument("--sitting-minutes", type=float, default=0, help="pause after the epoch that crosses this")
    parser.add_argument("--dry-run", action="store_true", help="print the arguments per model, train nothing")
    args = parser.parse_args(argv)

    models = args.model or ["yolov8n.yaml", "yolov8n-incep.yaml"]
    models = [recipe.p2_variant(m) for m in models] if args.p2 else models
    budget = recipe.BUDGETS[args.budget]
    data = resolve_data(args.data, budget.tile, args.project / "data")
    for model in models:
        run = recipe.train_args(budget, data, args.project / args.budget, f"{Path(model).stem}-s{args.seed}", args.seed)
        if args.dry_run:
            print(json.dumps({"model": model, **run}))
            continue
        from ultralytics import YOLO

        last = Path(run["project"]) / run["name"] / "weights/last.pt"
        state = recipe.checkpoint_state(last)
        if state == "done":
            print(json.dumps({"model": model, "budget": args.budget, "done": str(last)}))
            continue
        yolo = YOLO(str(last) if state == "resume" else model)
        recipe.add_callbacks(yolo, sitting_minutes=args.sitting_minutes)
        try:
            results = yolo.train(**({"resume": True} if state == "resume" else run))
        except recipe.Pause as e:
            print(f"{model}: {e}")
            return 0
        metrics = {k: round(float(v), 5) for k, v in (results.results_dict if results else {}).items()}
        print(json.dumps({"model": model, "budget": args.budget, **metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
