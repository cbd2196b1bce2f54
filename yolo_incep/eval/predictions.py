"""Saved detections as a model source of `compare`: COCO results files (`.json`, `.json.gz`, `.json.xz`), read with
checks.

Two shapes are read:
- a plain COCO results list (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`, as pycocotools,
  SAHI and `compare`'s own `predictions_<name>.json` write it), whose image ids are 1-based positions in the split's
  sorted image list (`compare`'s gt.json). Such a list names no images, so a file for other frames of the same
  count would score without a word: it is read only beside compare's gt.json naming the split's images, or when
  the caller says the ids are positions (`--ids-by-position`);
- the self-describing form `bench` keeps for every finished run: `{"info": {...}, "images": [{"id", "file_name"}],
  "annotations": [results]}`, matched to the split by file name, so it stays valid on another machine or checkout.
  `info` carries what the detections cannot show: the model's params, GFLOPs and latency, the inference settings,
  and `slice` (the SAHI slice size, 0 for whole images). `write` stores the results as columns instead of
  "annotations" (`"columns": {"image_id": [...], "category_id": [...], "bbox": [x, y, w, h, x, ...], "score":
  [...]}`), boxes to 0.1 px and scores to 1e-4; with xz (`.json.xz`) a kept run takes ~0.26 MB instead of
  ~0.58 MB as rows in gzip (30,000 detections at conf 0.001). Measured on the CPU grid: 0.01-px boxes moved no metric
  by more than 1.1e-4 against the unrounded detections (yolov8n-s0), and 0.1-px boxes none by more than 1.2e-4
  against 0.01-px ones (yolov8n-s0, yolo26n-s0; AP_small@500 by 5e-5) while making the file a fifth smaller, which
  is what lets every kept run fit the tree's 6 MiB.

So a comparison never needs the checkpoint again: detections from bench, from SAHI or from any other detector are
scored, with intervals, exactly as a checkpoint's own.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
import re
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write_bytes
from .results import Results

SLICED_NAME = re.compile(r"\+slice(\d+)$")  # compare's name for a sliced row: '<arm>+slice<size>'
SUFFIXES = (".json", ".json.gz", ".json.xz")


def is_predictions(source: str | Path) -> bool:
    """Whether a model source names a saved predictions file rather than a checkpoint or model YAML."""
    return str(source).lower().endswith(SUFFIXES)


def compress(path: Path, data: bytes) -> bytes:
    """`data` as the file `path` holds it: gzip for '.gz', xz for '.xz' (a third smaller for these files), else raw."""
    name = str(path)
    return gzip.compress(data, mtime=0) if name.endswith(".gz") else lzma.compress(data) if name.endswith(".xz") \
        else data


def decompress(raw: bytes) -> bytes:
    """A file's bytes unpacked by their magic number (gzip, xz), whatever its name says."""
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else lzma.decompress(raw) if raw[:6] == b"\xfd7zXZ\x00" \
        else raw


@dataclass
class Predictions:
    """Detections of one model on one split (image ids = 1-based positions in the split) and what is known of it."""

    source: str
    detections: Results
    info: dict = field(default_factory=dict)

    @property
    def slice(self) -> int:
        """SAHI slice size the detections were made with; 0 for whole images."""
        return int(self.info.get("slice") or 0)


ROUND = {"bbox": 1, "score": 4}  # decimals kept by `write` (see the module's docstring for what it costs)


def write(path: Path, detections: list[dict], images: list[Path], info: dict) -> None:
    """Keep `detections` (image ids = positions in `images`) with the images' names and `info`, as columns rounded
    to ROUND; compressed as the suffix says."""
    cols = {"image_id": [d["image_id"] for d in detections], "category_id": [d["category_id"] for d in detections],
            "bbox": [round(v, ROUND["bbox"]) for d in detections for v in d["bbox"]],
            "score": [round(d["score"], ROUND["score"]) for d in detections]}
    doc = {"info": info | {"rounded": dict(ROUND)}, "images": [{"id": i, "file_name": Path(p).name}
                                                                for i, p in enumerate(images, 1)], "columns": cols}
    atomic_write_bytes(path, compress(path, json.dumps(doc, separators=(",", ":")).encode()))


def read(source: str | Path, images: list[Path], nc: int, ids_by_position: bool = False) -> Predictions:
    """The detections of a saved predictions file, checked against the split's `images` and `nc` classes. A plain
    results list names no images: it needs compare's gt.json of the same images beside it, or `ids_by_position`
    (the caller's word that image id i is the split's i-th image)."""
    path = Path(source)
    if not path.is_file():
        raise InputError(f"predictions {source}: no such file")
    try:
        raw = path.read_bytes()
        doc = json.loads(decompress(raw))
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"predictions {source}: not a COCO results JSON ({type(e).__name__}: {e})") from e
    if isinstance(doc, list):
        info, ids = {}, None
        _check_sibling_gt(path, images, ids_by_position)
        columns = _entries(doc)
    elif isinstance(doc, dict) and isinstance(doc.get("images"), list) and (
            isinstance(doc.get("annotations"), list) or isinstance(doc.get("columns"), dict)):
        columns = _entries(doc["annotations"]) if "annotations" in doc else _checked_columns(source, doc["columns"])
        info = _checked_info(source, doc.get("info"))
        ids = _match_images(source, doc["images"], images)
    else:
        raise InputError(f"predictions {source}: expected a COCO results list, or a dict with 'images' and "
                         "'annotations' (or 'columns')")
    return Predictions(str(source), _checked_all(source, columns, len(images), nc, ids), info)


# the `info` fields compare reads, with their types: (check, what it must be); other fields are kept unread
INFO_FIELDS = {
    "slice": (lambda v: _whole(v) and v >= 0, "a whole number >= 0 (0: whole images)"),
    "params": (lambda v: v is None or (_whole(v) and v >= 0), "a whole number >= 0 or null"),
    "gflops": (lambda v: v is None or (_finite(v) and v >= 0), "a number >= 0 or null"),
    "latency_ms": (lambda v: v is None or (_finite(v) and v >= 0), "a number >= 0 or null"),
    "imgsz": (lambda v: _whole(v) and v > 0, "a whole number > 0"),
    "conf": (lambda v: _finite(v) and 0 <= v <= 1, "a number in 0..1"),
    "iou": (lambda v: _finite(v) and 0 <= v <= 1, "a number in 0..1"),
    "max_det": (lambda v: _whole(v) and v > 0, "a whole number > 0"),
    "nms_free": (lambda v: isinstance(v, bool), "true or false"),
}


def _checked_info(source, info) -> dict:
    """The file's `info`, every field compare reads of the type it needs (an InputError naming the field)."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise InputError(f"predictions {source}: 'info' must be an object, got {info!r}")
    for key, (ok, what) in INFO_FIELDS.items():
        if key in info and not ok(info[key]):
            raise InputError(f"predictions {source}: info {key!r} must be {what}, got {info[key]!r}")
    return info


def _checked_columns(source, cols: dict) -> dict:
    """`write`'s columns, their lists and lengths checked (the entries are checked with all others')."""
    keys = ("image_id", "category_id", "bbox", "score")
    if not all(isinstance(cols.get(k), list) for k in keys):
        raise InputError(f"predictions {source}: 'columns' needs the lists {', '.join(keys)}")
    n = len(cols["image_id"])
    if not len(cols["category_id"]) == len(cols["score"]) == n or len(cols["bbox"]) != 4 * n:
        raise InputError(f"predictions {source}: 'columns' of different lengths (bbox holds 4 numbers a detection)")
    return dict(cols, entry=lambda k: {"image_id": cols["image_id"][k], "category_id": cols["category_id"][k],
                                       "bbox": cols["bbox"][4 * k:4 * k + 4], "score": cols["score"][k]}, n=n)


def _entries(dets: list) -> dict:
    """A results list as columns (bbox flattened), for _checked_all; None where not every entry is an object."""
    if not set(map(type, dets)) <= {dict}:
        return {"entry": dets.__getitem__, "n": len(dets), "image_id": None}  # (read entry by entry)
    boxes = [d.get("bbox") for d in dets]
    flat = list(chain.from_iterable(boxes)) if set(map(type, boxes)) <= {list} and set(map(len, boxes)) <= {4} \
        else None
    return {"image_id": [d.get("image_id") for d in dets], "category_id": [d.get("category_id") for d in dets],
            "bbox": flat, "score": [d.get("score") for d in dets], "entry": dets.__getitem__, "n": len(dets)}


INTS, NUMBERS = {int}, {int, float}  # JSON's types (bool is not an int here, as _checked says)


def _checked_all(source, cols: dict, n_images: int, nc: int, ids: dict[int, int] | None) -> Results:
    """Every entry checked as _checked checks one, with numpy over the columns; the first entry that fails (in file
    order) goes through _checked, which names it and what is wrong. Entries of other types than JSON's plain ints
    and numbers (or numbers no array holds) are read one by one, as _checked reads them."""
    n = cols["n"]
    try:
        typed = cols["image_id"] is not None and cols["bbox"] is not None and all(
            set(map(type, cols[key])) <= kinds for key, kinds in
            (("image_id", INTS), ("category_id", INTS), ("bbox", NUMBERS), ("score", NUMBERS)))
        if typed:
            image, cat = np.array(cols["image_id"], np.int64), np.array(cols["category_id"], np.int64)
            box = np.array(cols["bbox"], float).reshape(n, 4)
            score = np.array(cols["score"], float)
    except OverflowError:  # a number beyond int64 or float64: as _checked would take it
        typed = False
    if not typed:
        out = [_checked(source, k, cols["entry"](k), n_images, nc, ids) for k in range(n)]
        return Results.of(out)
    if ids is None:
        bad = (image < 1) | (image > n_images)
    else:
        listed, inverse = np.unique(image, return_inverse=True)
        image = np.array([ids.get(i, 0) for i in listed.tolist()], np.int64)[inverse]  # split positions are >= 1
        bad = image == 0
    bad |= (cat < 1) | (cat > nc)
    bad |= ~np.isfinite(box).all(1) | (box[:, 2:] < 0).any(1)
    bad |= ~np.isfinite(score) | (score < 0) | (score > 1)
    if bad.any():
        k = int(np.argmax(bad))
        _checked(source, k, cols["entry"](k), n_images, nc, ids)
        raise AssertionError(f"predictions {source}: detection {k} failed a check _checked passes")
    return Results(image, cat, box, score)


def _match_images(source, listed: list, images: list[Path]) -> dict[int, int]:
    """{file's image id: position in the split}, by file name; every split image must be covered."""
    position = {p.name: i for i, p in enumerate(images, 1)}
    if len(position) != len(images):
        raise InputError(f"predictions {source}: the split has images of the same file name in several folders, so "
                         "saved predictions cannot be matched to them by name")
    ids = {}
    for k, im in enumerate(listed):
        if not (isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)):
            raise InputError(f"predictions {source}: images[{k}]: expected {{'id': int, 'file_name': str}}")
        name = Path(im["file_name"]).name
        if name not in position:
            raise InputError(f"predictions {source}: image {name!r} is not in the split being evaluated "
                             f"({len(images)} images): predictions of other images")
        ids[im["id"]] = position[name]
    missing = sorted(set(position.values()) - set(ids.values()))
    if missing:
        raise InputError(f"predictions {source}: covers {len(ids)} of the split's {len(images)} images "
                         f"(missing e.g. {images[missing[0] - 1].name}): predictions of other images")
    return ids


def _check_sibling_gt(path: Path, images: list[Path], ids_by_position: bool) -> None:
    """A plain results list names no images: compare's gt.json beside it (as compare writes predictions_<row>.json)
    must name the split's images in order, or the caller says that its ids are positions in the split."""
    gt = path.parent / "gt.json"
    try:
        names = [Path(im["file_name"]).name for im in json.loads(gt.read_text(encoding="utf-8"))["images"]]
    except FileNotFoundError:
        names = None
    except (OSError, ValueError, KeyError, TypeError):
        if ids_by_position:
            return
        raise InputError(f"predictions {path}: the gt.json beside it is not compare's (no images with file names), "
                         f"so nothing says which images its ids are; pass --ids-by-position if id i is the split's "
                         f"i-th image (sorted by path)") from None
    if names is None:
        if ids_by_position:
            return
        raise InputError(f"predictions {path}: a plain results list names no images and no gt.json of compare's lies "
                         f"beside it; put the gt.json it was made with beside it, or pass --ids-by-position if id i "
                         f"is the split's i-th image (sorted by path, as compare numbers them)")
    if names != [p.name for p in images]:
        raise InputError(f"predictions {path}: the gt.json beside it names other images than the split being "
                         f"evaluated ({len(names)} vs {len(images)} images): predictions of other images")


def _checked(source, k: int, d, n_images: int, nc: int, ids: dict[int, int] | None) -> dict:
    """One results entry, validated, with its image id mapped to the split position."""
    where = f"predictions {source}: detection {k}"
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object with image_id, category_id, bbox, score")
    image_id, cat, bbox, score = (d.get(key) for key in ("image_id", "category_id", "bbox", "score"))
    if not isinstance(image_id, int) or (ids is None and not 1 <= image_id <= n_images) or (
            ids is not None and image_id not in ids):
        raise InputError(f"{where}: image_id {image_id!r} is not an image of the split ({n_images} images)")
    if not isinstance(cat, int) or not 1 <= cat <= nc:
        raise InputError(f"{where}: category_id {cat!r} outside 1..{nc} (the dataset's classes)")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox) and min(bbox[2:]) >= 0):
        raise InputError(f"{where}: bbox {bbox!r} is not [x, y, w, h] with w, h >= 0")
    if not (_finite(score) and 0 <= score <= 1):
        raise InputError(f"{where}: score {score!r} outside 0..1")
    return {"image_id": image_id if ids is None else ids[image_id], "category_id": cat,
            "bbox": [float(v) for v in bbox], "score": float(score)}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
