"""Keep a finished benchmark run as its predictions: predict the untiled val frames with its checkpoint and record
them in the run's kept folder (done.json gains "predictions"), as `yolo-incep bench` does for every new run.

Kept runs of earlier versions held last.pt itself; git history still does (see docs/results.md). To score one again:

    git show <commit>:docs/results/bench_small_cpu/runs/yolov8n-s0/last.pt > /tmp/yolov8n-s0.pt
    python scripts/keep_run_predictions.py /tmp/yolov8n-s0.pt docs/results/bench_small_cpu/runs/yolov8n-s0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from yolo_incep import recipe
from yolo_incep.errors import InputError
from yolo_incep.files import atomic_write_bytes
from yolo_incep.bench.runs import Workspace, keep_predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("kept", type=Path, help="the run's kept folder (holds done.json)")
    parser.add_argument("--budget", default="cpu", choices=sorted(recipe.BUDGETS))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: runs/bench_small/<budget>)")
    parser.add_argument("--whole-only", action="store_true", help="no SAHI sliced predictions (they take longest)")
    parser.add_argument("--commit", default=None, help="the commit whose tree holds the checkpoint, for the record")
    args = parser.parse_args(argv)
    try:
        done = args.kept / "done.json"
        if not done.is_file():
            raise InputError(f"{done}: no such file (not a kept run folder)")
        budget = recipe.BUDGETS[args.budget]
        budget = replace(budget, slice=0) if args.whole_only else budget
        ws = Workspace(args.work or Path("runs/bench_small") / args.budget, budget, args.kept.parent.parent)
        if not (ws.frames / "data.yaml").is_file():
            from yolo_incep.data.prepare import find_sample
            from yolo_incep.data.visdrone import convert_visdrone

            convert_visdrone(find_sample() / "VisDrone2019-DET-train", ws.frames, val_fraction=0.2, seed=0)
        record = json.loads(done.read_text())
        record["predictions"] = keep_predictions(ws, args.checkpoint, args.kept)
        record["checkpoint"] = f"{args.commit}:{done.parent / 'last.pt'}" if args.commit else str(args.checkpoint)
        atomic_write_bytes(done, json.dumps(record, indent=1))
    except InputError as e:
        print(f"keep_run_predictions: error: {e}", file=sys.stderr)
        return 2
    print(f"kept {', '.join(record['predictions'])} in {args.kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
