"""COCO-style box evaluation of a YOLO-format dataset: ground truth, ignored regions, and AP read from the eval arrays.

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

MAX_DETS = (100, 500)  # VisDrone images hold hundreds of objects: 100 alone truncates recall
AREAS = ("all", "small", "medium", "large")  # pycocotools' areaRngLbl order
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


def drop_ignored(detections: list[dict], gt: dict) -> list[dict]:
    """Detections less than half covered by their image's ignored regions (the rest are ignored, as in VisDrone)."""
    regions = {im["id"]: np.array(im.get("ignored_regions", []), dtype=float).reshape(-1, 4) for im in gt["images"]}
    by_image: dict[int, list[dict]] = {}
    for d in detections:
        by_image.setdefault(d["image_id"], []).append(d)
    kept = []
    for image_id, dets in by_image.items():
        frac = covered_fraction(np.array([d["bbox"] for d in dets], dtype=float), regions[image_id])
        kept += [d for d, f in zip(dets, frac) if f < IGNORE_COVERAGE]
    return kept


def _backend(name: str):
    """(COCO, COCOeval) classes of an evaluation backend."""
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if name == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    raise ValueError(f"unknown COCO backend {name!r}")


def available_backends() -> list[str]:
    """pycocotools always; faster-coco-eval when installed (both are run and must agree)."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return ["pycocotools"]
    return ["pycocotools", "faster_coco_eval"]


def run_cocoeval(gt: dict, detections: list[dict], backend: str = "pycocotools"):
    """Evaluated-and-accumulated COCOeval (bbox) with maxDets 1, 10, 100, 500; its chatter is swallowed."""
    COCO, COCOeval = _backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        else:  # pycocotools' loadRes cannot take an empty list: an empty result set is just no annotations
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.params.maxDets = [1, 10, *MAX_DETS]
        e.evaluate()
        e.accumulate()
    return e


def _mean(values: np.ndarray) -> float | None:
    """Mean over entries pycocotools marks as defined (> -1); None where nothing is (e.g. no large objects)."""
    v = values[values > -1]
    return float(v.mean()) if v.size else None


def metrics(e) -> dict:
    """AP/AR per maxDets and per-class AP_small (at the largest maxDets), read from the eval arrays."""
    p, precision, recall = e.params, np.asarray(e.eval["precision"]), np.asarray(e.eval["recall"])
    a = {name: i for i, name in enumerate(AREAS)}
    t50, t75 = (int(np.argmin(np.abs(np.asarray(p.iouThrs) - t))) for t in (0.5, 0.75))
    out: dict = {"maxDets": {}}
    for md in MAX_DETS:
        m = list(p.maxDets).index(md)
        row = {"AP": _mean(precision[:, :, :, a["all"], m]), "AP50": _mean(precision[t50, :, :, a["all"], m]),
               "AP75": _mean(precision[t75, :, :, a["all"], m])}
        row |= {f"AP_{s}": _mean(precision[:, :, :, a[s], m]) for s in AREAS[1:]}
        row["AR"] = _mean(recall[:, :, a["all"], m])
        row |= {f"AR_{s}": _mean(recall[:, :, a[s], m]) for s in AREAS[1:]}
        out["maxDets"][str(md)] = row
    m = list(p.maxDets).index(MAX_DETS[-1])
    cats = {c["id"]: c["name"] for c in e.cocoGt.dataset["categories"]}
    out["per_class_AP_small"] = {cats[c]: _mean(precision[:, :, k, a["small"], m]) for k, c in enumerate(p.catIds)}
    return out


def evaluate(gt: dict, detections: list[dict], backends: list[str] | None = None) -> dict:
    """Metrics from the first backend, with the largest disagreement of the others recorded."""
    return summarize([run_cocoeval(gt, detections, b) for b in backends or available_backends()])


def summarize(evals: list) -> dict:
    """metrics() of the first evaluated COCOeval, with the backends and their largest disagreement."""
    results = [metrics(e) for e in evals]
    first = flatten(results[0])
    diff = max((_distance(first[k], flatten(r)[k]) for r in results[1:] for k in first), default=0.0)
    return results[0] | {"backends": [_backend_name(e) for e in evals], "backend_max_abs_diff": diff}


def _backend_name(e) -> str:
    """The backend an evaluated COCOeval comes from."""
    return "faster_coco_eval" if type(e).__module__.startswith("faster_coco_eval") else "pycocotools"


def _distance(a: float | None, b: float | None) -> float:
    """|a - b|, where undefined (None) only matches undefined."""
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b)


def flatten(m: dict) -> dict[str, float | None]:
    """Every number of a metrics dict under one flat key: 'AP_small@500', 'AP_small[car]'."""
    flat = {f"{k}@{md}": v for md, row in m["maxDets"].items() for k, v in row.items()}
    return flat | {f"AP_small[{c}]": v for c, v in m["per_class_AP_small"].items()}
