"""Speed of `compare` from saved predictions against faster-coco-eval's own evaluation of the same rows; prints a
table of ratios measured in one run (and its JSON with --json).

Per frame count (synthetic VisDrone-like frames, visdrone_like.py; 2 arms x 2 seeds = 4 rows of 500 detections a
frame), in a fresh process each so that memory peaks are its own:
- floor: faster-coco-eval (COCO, loadRes, COCOeval_faster evaluate + accumulate, maxDets 1/10/100/500) on each
  row's detections in memory: its own evaluation, nothing else (COCO's areas; 'floor_same_buckets': with compare's
  bucket table as area ranges);
- compare: `compare_models` on the files, as `yolo-incep compare` runs it after its imports: reading the saved
  predictions, ground truth from the labels, evaluation, the 1,000-resample bootstrap, errors by size, PR curves,
  confusion, report.json/csv, plots and predictions_<name>.json written; with the time spent reading the saved
  predictions apart ('read_s');
- peak memory: the largest resident set of that process by the end of compare (getrusage; compare runs first, on
  the data written to disk).

Usage: python -m yolo_incep.bench.compare_speed [--frames 60 240 548 1610] [--sizes both] [--work DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRAMES = (60, 240, 548, 1610)
ARMS, SEEDS = 2, 2  # 4 rows: base=m1,m2 incep=m3,m4


def floor(gt: dict, rows: list[list[dict]], area_rng: list | None = None) -> float:
    """Seconds faster-coco-eval takes to evaluate every row (its own work only: the detections are in memory)."""
    import contextlib
    import io

    from faster_coco_eval import COCO, COCOeval_faster

    t = time.perf_counter()
    for dets in rows:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            e = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), "bbox")
            e.params.maxDets = [1, 10, 100, 500]
            if area_rng is not None:
                e.params.areaRng, e.params.areaRngLbl = area_rng, [str(i) for i in range(len(area_rng))]
            e.evaluate()
            e.accumulate()
    return time.perf_counter() - t


def one(frames: int, work: Path, sizes: str) -> dict:
    """Measure one frame count in this process (the parent runs each in a fresh one)."""
    import resource

    from ..eval import buckets, coco, compare, predictions
    from . import visdrone_like

    root = work / f"frames{frames}"
    data, files = visdrone_like.write_dataset(root, frames, ARMS * SEEDS)
    reading = []
    read = predictions.read

    def timed_read(*args, **kwargs):
        t = time.perf_counter()
        try:
            return read(*args, **kwargs)
        finally:
            reading.append(time.perf_counter() - t)

    predictions.read = timed_read  # the time compare spends reading saved predictions, apart
    models = [f"arm{a}=" + ",".join(str(f) for f in files[a * SEEDS:(a + 1) * SEEDS]) for a in range(ARMS)]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    compare.compare_models(models, data, out=root / "compare", sizes=sizes, verbose=False)
    out = {"frames": frames, "compare_s": time.perf_counter() - t, "read_s": sum(reading),
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss}
    predictions.read = read
    images, names = coco.load_data_yaml(data, "val")
    gt = coco.build_gt(images, names)
    rows = [coco.drop_ignored(predictions.read(f, images, len(names)).detections, gt).to_list() for f in files]
    out |= {"rows": len(rows), "detections_per_row": len(rows[0]),
            "objects": sum(1 for a in gt["annotations"] if not a["iscrowd"])}
    out["floor_s"] = floor(gt, rows)
    out["floor_same_buckets_s"] = floor(gt, rows, [list(b.area) for b in buckets.buckets(sizes)])
    return out


def table(results: list[dict]) -> str:
    """The printed table: ratios within this run."""
    base = results[0]
    lines = ["frames  compare/floor  (same buckets)  compare-read/floor  s/frame vs first  read share  peak RSS MB"]
    for r in results:
        per_frame = (r["compare_s"] / r["frames"]) / (base["compare_s"] / base["frames"])
        lines.append(f"{r['frames']:>6}  {r['compare_s'] / r['floor_s']:>13.2f}  "
                     f"{r['compare_s'] / r['floor_same_buckets_s']:>14.2f}  "
                     f"{(r['compare_s'] - r['read_s']) / r['floor_s']:>18.2f}  {per_frame:>16.2f}  "
                     f"{r['read_s'] / r['compare_s']:>10.2f}  {r['max_rss_mb']:>11.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    p.add_argument("--sizes", default="both", choices=("both", "coco", "aitod"))
    p.add_argument("--work", type=Path, default=None, help="folder for the synthetic data (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process of one frame count
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.work, args.sizes)))
        return 0
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        results = []
        for frames in args.frames:
            child = subprocess.run([sys.executable, "-m", "yolo_incep.bench.compare_speed", "--one", str(frames),
                                    "--work", tmp, "--sizes", args.sizes], capture_output=True, text=True,
                                   check=True)
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    load = os.getloadavg()
    summary = {"results": results, "sizes": args.sizes, "cpus": os.cpu_count(),
               "load_average_1_5_15": [round(v, 2) for v in load], "python": sys.version.split()[0]}
    print(table(results))
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    if args.json:  # atomic: an interrupted run leaves the earlier figures whole
        from ..files import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
