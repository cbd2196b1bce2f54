"""COCO-style box evaluation of a YOLO-format dataset: ground truth, ignored regions, compare's evaluation
(matching.py, pycocotools' rules) and the metrics read from its arrays; the libraries run as references beside it.

Ignored regions follow the VisDrone toolkit: a ground-truth box or a detection whose area is at least half covered
by the image's ignored regions (their union) is ignored. Ignored ground truth stays in the COCO file as `iscrowd: 1`
(pycocotools neither counts it nor penalises detections on it); ignored detections are left out of the results.
Both choices live in the written files, so any stock COCO evaluator reproduces the numbers.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np

from ..data.yolo import image_size, label_path, read_labels, read_regions, to_xywh
from ..data.yolo import load_data_yaml  # noqa: F401  (eval.compare reads data YAMLs through this module)
from ..errors import InputError
from . import buckets, matching
from .results import Results

MAX_DETS = (100, 500)  # VisDrone images hold hundreds of objects: 100 alone truncates recall
IGNORE_COVERAGE = 0.5


def covered_fraction(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Fraction of each `x y w h` box's area covered by the union of `x y w h` regions (exact, by coordinate grid)."""
    out = np.zeros(len(boxes))
    if not len(regions) or not len(boxes):
        return out
    r = np.concatenate([regions[:, :2], regions[:, :2] + regions[:, 2:]], axis=1)
    for i, (x, y, w, h) in enumerate(boxes):
        if w <= 0 or h <= 0:
            continue
        c = np.clip(r, [x, y, x, y], [x + w, y + h, x + w, y + h])  # regions clipped to the box
        c = c[(c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])]
        if not len(c):
            continue
        xs, ys = np.unique(c[:, [0, 2]]), np.unique(c[:, [1, 3]])
        cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2  # grid cell centres
        inside = ((c[:, None, None, 0] < cx[None, :, None]) & (cx[None, :, None] < c[:, None, None, 2])
                  & (c[:, None, None, 1] < cy[None, None, :]) & (cy[None, None, :] < c[:, None, None, 3])).any(0)
        out[i] = (np.diff(xs)[:, None] * np.diff(ys)[None, :])[inside].sum() / (w * h)
    return out


def build_gt(images: list[Path], names: list[str]) -> dict:
    """COCO ground truth: every label box (ignored ones as iscrowd), ignored regions kept per image for reference."""
    labels = [label_path(p) for p in images]
    for d in sorted({lb.parent for lb in labels}):
        if not d.is_dir():
            raise InputError(f"label directory {d} does not exist (expected beside the images, /images/ -> /labels/)")
    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    for image_id, (image, label) in enumerate(zip(images, labels), 1):
        width, height = image_size(image)
        rows = read_labels(label, len(names))
        regions = to_xywh(read_regions(label_path(image, "ignore")), width, height)
        boxes = to_xywh(rows[:, 1:], width, height)
        ignored = covered_fraction(boxes, regions) >= IGNORE_COVERAGE
        gt["images"].append({"id": image_id, "file_name": str(image), "width": width, "height": height,
                             "ignored_regions": regions.tolist()})
        for c, box, ign in zip(rows[:, 0], boxes.tolist(), ignored):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                      "bbox": box, "area": box[2] * box[3], "iscrowd": int(ign)})
    return gt


def drop_ignored(detections, gt: dict) -> Results:
    """Detections (COCO results: a list or Results) less than half covered by their image's ignored regions (the rest
    are ignored, as in VisDrone), grouped by image in the order images first appear, in file order within each."""
    dets = Results.of(detections)
    regions = {im["id"]: np.array(im.get("ignored_regions", []), dtype=float).reshape(-1, 4) for im in gt["images"]}
    _, first, inverse = np.unique(dets.image_id, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.intp)
    rank[np.argsort(first)] = np.arange(len(first))  # images in the order they first appear
    order = np.argsort(rank[inverse], kind="stable")
    image = dets.image_id[order]
    start = np.flatnonzero(np.r_[True, image[1:] != image[:-1]]) if len(image) else np.zeros(0, np.intp)
    kept = np.ones(len(order), bool)
    for lo, hi in zip(start, np.r_[start[1:], len(image)]):
        kept[lo:hi] = covered_fraction(dets.bbox[order[lo:hi]], regions[int(image[lo])]) < IGNORE_COVERAGE
    return dets.take(order[kept])


def _backend(name: str):
    """(COCO, COCOeval) classes of a library evaluator."""
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if name == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    raise ValueError(f"unknown COCO backend {name!r}")


def available_backends() -> list[str]:
    """Library evaluators installed: pycocotools always, faster-coco-eval with the [eval] extra."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return ["pycocotools"]
    return ["pycocotools", "faster_coco_eval"]


def evaluate(gt: dict, detections: list[dict], sizes: str = buckets.SIZES[0], progress=None) -> matching.Evaluation:
    """compare's evaluation: pycocotools' rules with COCO's and/or AI-TOD's size buckets, at maxDets MAX_DETS, with
    the per-image matches the bootstrap and the error breakdown read (matching.py)."""
    return matching.evaluate(gt, detections, buckets.buckets(sizes), MAX_DETS, progress)


def run_cocoeval(gt: dict, detections, backend: str = "pycocotools", sizes: str | None = None):
    """A library's evaluated-and-accumulated COCOeval (bbox) with maxDets 1, 10, 100, 500 and COCO's area ranges
    (or the buckets of `sizes`); its chatter is swallowed. The reference compare's own evaluation is checked with."""
    COCO, COCOeval = _backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if len(detections):
            coco_dt = coco_gt.loadRes(copy.deepcopy(list(detections)))
        else:  # pycocotools' loadRes cannot take an empty list: an empty result set is just no annotations
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.params.maxDets = [1, 10, *MAX_DETS]
        if sizes is not None:
            e.params.areaRng = [list(b.area) for b in buckets.buckets(sizes)]
            e.params.areaRngLbl = [b.key for b in buckets.buckets(sizes)]
        e.evaluate()
        e.accumulate()
    return e


def cross_check(gt: dict, detections, e: matching.Evaluation, backend: str) -> float:
    """Largest difference between compare's precision and recall arrays and those of a library evaluator run on
    the same detections with the same buckets (0 for pycocotools: the same rules to the last bit)."""
    sizes = next(s for s in buckets.SIZES if buckets.buckets(s) == e.buckets)
    ref = run_cocoeval(gt, detections, backend, sizes)
    m = [list(ref.params.maxDets).index(md) for md in e.params.maxDets]
    diffs = [np.abs(np.asarray(ref.eval["precision"])[..., m] - e.eval["precision"]),
             np.abs(np.asarray(ref.eval["recall"])[..., m] - e.eval["recall"])]
    return float(max(d.max(initial=0.0) for d in diffs))


def _mean(values: np.ndarray) -> float | None:
    """Mean over entries pycocotools marks as defined (> -1); None where nothing is (e.g. no large objects)."""
    v = values[values > -1]
    return float(v.mean()) if v.size else None


def metrics(e) -> dict:
    """Every metric of buckets.keys per maxDets (of compare's MAX_DETS) and per-class AP_small (at the largest), read
    from the accumulated arrays of an evaluation: compare's own (matching.Evaluation) or a library COCOeval."""
    p, precision, recall = e.params, np.asarray(e.eval["precision"]), np.asarray(e.eval["recall"])
    area = {label: i for i, label in enumerate(p.areaRngLbl)}
    iou = np.asarray(p.iouThrs)
    out: dict = {"maxDets": {}}
    for md in MAX_DETS:
        m = list(p.maxDets).index(md)
        row = {}
        for key, metric, bucket in buckets.keys("both"):
            if bucket.key not in area:
                continue
            t = slice(None) if metric.iou is None else int(np.argmin(np.abs(iou - metric.iou)))
            a = area[bucket.key]
            row[key] = _mean(precision[t, :, :, a, m] if metric.kind == "AP" else recall[t, :, a, m])
        out["maxDets"][str(md)] = row
    m = list(p.maxDets).index(MAX_DETS[-1])
    names = e.names if hasattr(e, "names") else [c["name"] for c in e.cocoGt.loadCats(p.catIds)]
    out["per_class_AP_small"] = {n: _mean(precision[:, :, k, area["small"], m]) for k, n in enumerate(names)} \
        if "small" in area else {}
    return out


def flatten(m: dict) -> dict[str, float | None]:
    """Every number of a metrics dict under one flat key: 'AP_small@500', 'AP_small[car]'."""
    flat = {f"{k}@{md}": v for md, row in m["maxDets"].items() for k, v in row.items()}
    return flat | {f"AP_small[{c}]": v for c, v in m["per_class_AP_small"].items()}
