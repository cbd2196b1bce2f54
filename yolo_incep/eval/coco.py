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
import yaml

from ..data.common import IMAGE_SUFFIXES, ignore_path
from ..errors import InputError

MAX_DETS = (100, 500)  # VisDrone images hold hundreds of objects: 100 alone truncates recall
AREAS = ("all", "small", "medium", "large")  # pycocotools' areaRngLbl order
IGNORE_COVERAGE = 0.5


def load_data_yaml(data: str | Path, split: str) -> tuple[list[Path], list[str]]:
    """Image paths of `split` and class names from an Ultralytics data YAML."""
    data = Path(data)
    if not data.is_file():
        raise InputError(f"--data {data}: no such file")
    try:
        cfg = yaml.safe_load(data.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"{data}: not valid YAML: {e}") from e
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise InputError(f"{data}: a data YAML needs a 'names' mapping or list")
    names = cfg["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise InputError(f"{data}: 'names' keys must be 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if cfg.get(split) is None:
        splits = sorted(k for k in cfg if k not in {"names", "nc", "path", "download"})
        raise InputError(f"{data}: no '{split}' split (has {splits})")
    root = Path(cfg.get("path") or data.parent)
    if not root.is_absolute():  # as Ultralytics: relative to the working directory, else beside the YAML
        root = root if root.exists() else data.parent / root
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    images = [im.absolute() for e in entries for im in _list_images(root / e, f"{data}: {split}")]
    if not images:
        raise InputError(f"{data}: split '{split}' holds no images ({[str(root / e) for e in entries]})")
    return images, [str(n) for n in names]


def _list_images(path: Path, where: str) -> list[Path]:
    """Images in a directory (recursively) or listed in a .txt file (paths relative to the file's folder)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix == ".txt" and path.is_file():
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        return [p if p.is_absolute() else (path.parent / p) for p in map(Path, lines)]
    raise InputError(f"{where}: {path} is neither a directory nor a .txt list of images")


def label_path(image: Path) -> Path:
    """YOLO label file of an image: the last /images/ component becomes /labels/, the suffix .txt."""
    parts = list(image.parts)
    if "images" not in parts:
        raise InputError(f"{image}: image path has no 'images' folder, so it has no YOLO label path")
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_rows(path: Path, columns: int) -> tuple[np.ndarray, list[int]]:
    """Rows of `columns` numbers from a label-style text file, with their line numbers; a missing file has none."""
    if not path.is_file():
        return np.zeros((0, columns)), []
    rows, lines = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.split()]
        except ValueError:
            row = []
        if len(row) != columns or not all(np.isfinite(row)):
            raise InputError(f"{path}:{n}: expected {columns} numbers, got {line.strip()!r}")
        rows.append(row)
        lines.append(n)
    return np.array(rows, dtype=float).reshape(-1, columns), lines


def read_labels(path: Path, nc: int) -> np.ndarray:
    """YOLO labels `cls cx cy w h` (normalised), class ids checked against `nc`."""
    rows, lines = read_rows(path, 5)
    for c, n in zip(rows[:, 0], lines):
        if c != int(c) or not 0 <= c < nc:
            raise InputError(f"{path}:{n}: class id {c:g} is outside names (0..{nc - 1})")
    return rows


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as inference decodes the image (EXIF-rotated); a missing or corrupt one is an InputError."""
    from ultralytics.utils.patches import imread  # the reader Ultralytics' predictor uses

    if not path.is_file():
        raise InputError(f"{path}: no such image")
    im = imread(str(path))
    if im is None:
        raise InputError(f"{path}: unreadable image")
    return im.shape[1], im.shape[0]


def to_xywh(norm: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised `cx cy w h` rows to pixel `x y w h` (top-left corner), COCO's box format."""
    scale = np.array([width, height, width, height], dtype=float)
    b = norm.reshape(-1, 4) * scale
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, 2:]], axis=1)


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
        regions = to_xywh(read_rows(ignore_path(label), 4)[0], width, height)
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
