"""Speed of compare's paired bootstrap on a VisDrone-sized synthetic case; prints one JSON line.

60 frames of 1360x765 with ~125 mostly small objects each (10 skewed classes, as VisDrone val), and per model 500
detections per frame: about half the objects found with box noise, the rest spurious. The issue's budget: 60 images x
4 models x 1000 resamples in under 30 s on 2 cores. Usage: python -m yolo_incep.eval.bench_bootstrap [--models 4]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from . import bootstrap, coco

CLASS_SHARE = np.array([0.22, 0.06, 0.03, 0.40, 0.08, 0.07, 0.02, 0.01, 0.05, 0.06])  # VisDrone-like skew
WIDTH, HEIGHT, OBJECTS, DETECTIONS = 1360, 765, 125, 500


def ground_truth(images: int, seed: int = 0) -> dict:
    """COCO ground truth: log-normal box sizes around 20 px (mostly 'small'), classes by CLASS_SHARE."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(10)]}
    for i in range(1, images + 1):
        gt["images"].append({"id": i, "width": WIDTH, "height": HEIGHT, "file_name": f"{i}.jpg"})
        for _ in range(int(rng.poisson(OBJECTS))):
            s = float(np.exp(rng.normal(3.0, 0.6)))
            w, h = s * rng.uniform(0.7, 1.4), s * rng.uniform(0.7, 1.4)
            box = [rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "bbox": box, "area": w * h,
                                      "category_id": int(rng.choice(10, p=CLASS_SHARE)) + 1, "iscrowd": 0})
    return gt


def detections(gt: dict, seed: int) -> list[dict]:
    """DETECTIONS per image: half the objects with 12 % box noise, the rest spurious and less confident."""
    rng = np.random.default_rng(seed)
    out = []
    for im in gt["images"]:
        objs = [a for a in gt["annotations"] if a["image_id"] == im["id"] and rng.random() < 0.5]
        for a in objs:
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.12 * np.sqrt(w * h), 4)
            out.append({"image_id": im["id"], "category_id": a["category_id"], "score": float(rng.beta(2, 3)),
                        "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
        for _ in range(DETECTIONS - len(objs)):
            s = float(np.exp(rng.normal(3.0, 0.6)))
            out.append({"image_id": im["id"], "category_id": int(rng.choice(10, p=CLASS_SHARE)) + 1,
                        "score": float(rng.beta(1, 6)), "bbox": [*rng.uniform(0, WIDTH - s, 2), s, s]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES)
    args = p.parse_args(argv)
    gt = ground_truth(args.images)
    t = time.perf_counter()
    matchings = [bootstrap.Matching.from_cocoeval(coco.run_cocoeval(gt, detections(gt, seed)))
                 for seed in range(1, args.models + 1)]
    cocoeval_s = time.perf_counter() - t
    counts = bootstrap.resample_counts(args.images, args.resamples)
    wall, cpu = time.perf_counter(), time.process_time()
    for m in matchings:
        m.scores(counts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"images": args.images, "models": args.models, "resamples": args.resamples,
                      "objects": len(gt["annotations"]), "detections_per_model": args.images * DETECTIONS,
                      "bootstrap_s": round(wall, 2), "bootstrap_cpu_s": round(cpu, 2),
                      "budget_s": 30, "ratio_to_budget": round(wall / 30, 3),
                      "pycocotools_evaluate_s": round(cocoeval_s, 1), "cpus": os.cpu_count(),
                      "load_average_1min": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
