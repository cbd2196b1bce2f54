"""Which class each small ground-truth box was detected as (confusion_small.csv).

Per image, at IoU >= 0.5 among detections scoring at least `conf` (Ultralytics' confusion-matrix default, 0.25):
first every detection, highest score first, takes the best unmatched box of its own class (COCO's matching), then
the detections left take the best box left of any class (the confusions). A small box (COCO: area < 32^2) left
over is `missed`; a small detection that overlaps no box at 0.5 (and no ignored box) is a `background` row entry.
Ignored boxes (iscrowd) are not rows; detections on them count nowhere.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from .results import Results

SMALL_AREA = 32 ** 2  # COCO's small/medium boundary


@dataclass
class Confusion:
    """Counts of small boxes: rows are true classes plus 'background', columns detected classes plus 'missed'."""

    names: list[str]
    counts: np.ndarray  # (classes + 1) x (classes + 1)
    conf: float
    iou: float

    @property
    def rows(self) -> list[str]:
        return [*self.names, "background"]

    @property
    def columns(self) -> list[str]:
        return [*self.names, "missed"]

    def to_json(self) -> dict:
        return {"conf": self.conf, "iou": self.iou, "rows": self.rows, "columns": self.columns,
                "counts": self.counts.tolist()}

    def csv_rows(self) -> list[dict]:
        """One dict per row: 'true' then a count per detected class and 'missed'."""
        return [{"true": r, **dict(zip(self.columns, map(int, row)))} for r, row in zip(self.rows, self.counts)]

    def __str__(self) -> str:
        cells = [["true \\ detected", *self.columns]] + [[r, *map(str, row)] for r, row in zip(self.rows, self.counts)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        title = f"small objects, IoU {self.iou:g}, conf >= {self.conf:g}"
        return "\n".join([title] + ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                                              enumerate(zip(row, widths))) for row in cells])


def small_confusion(gt: dict, detections, conf: float = 0.25, iou: float = 0.5) -> Confusion:
    """The confusion table of small objects for COCO ground truth (ignored boxes as iscrowd) and COCO results (a
    list or results.Results)."""
    from pycocotools import mask as mask_utils

    names = [c["name"] for c in gt["categories"]]
    index = {c["id"]: k for k, c in enumerate(gt["categories"])}
    counts = np.zeros((len(names) + 1, len(names) + 1), int)
    boxes: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    res = Results.of(detections)
    res = res.take(np.flatnonzero(res.score >= conf))
    res = res.take(np.lexsort((np.arange(len(res)), -res.score, res.image_id)))  # per image by score, stable
    classes = np.array([index[c] for c in res.category_id.tolist()], int)
    images = sorted({im["id"] for im in gt["images"]})
    for image_id, lo, hi in zip(images, np.searchsorted(res.image_id, images),
                                np.searchsorted(res.image_id, images, "right")):
        g = boxes.get(image_id, [])
        d_box, d_cls = res.bbox[lo:hi], classes[lo:hi]
        crowd = np.array([bool(a["iscrowd"]) for a in g], bool)
        g_cls = np.array([index[a["category_id"]] for a in g], int)
        ious = np.zeros((len(d_box), len(g)))
        if len(d_box) and len(g):
            ious = np.asarray(mask_utils.iou(d_box, [a["bbox"] for a in g], crowd.astype(int)))
        real = ious * ~crowd[None, :]
        match = np.full(len(d_box), -1)
        taken = crowd.copy()  # ignored boxes are never rows
        reach = np.flatnonzero((real >= iou).any(1)) if len(g) else np.zeros(0, int)  # the others match nothing
        for same_class in (True, False):
            for i in reach:
                if match[i] >= 0:
                    continue
                cand = np.where(taken | ((g_cls != d_cls[i]) if same_class else False), 0.0, real[i])
                if cand.max() >= iou:
                    match[i] = int(cand.argmax())
                    taken[match[i]] = True
        small = np.array([a["area"] < SMALL_AREA for a in g], bool)
        hit = np.flatnonzero(match >= 0)
        hit = hit[small[match[hit]]]
        np.add.at(counts, (g_cls[match[hit]], d_cls[hit]), 1)
        area = d_box[:, 2] * d_box[:, 3]
        lone = (match < 0) & (area < SMALL_AREA) & ~(ious >= iou).any(1)  # on no box at all (a duplicate or an
        np.add.at(counts, (-1, d_cls[lone]), 1)  # ignored box is not background)
        np.add.at(counts, (g_cls[small & ~taken], -1), 1)
    return Confusion(names, counts, conf, iou)


def csv_text(tables: dict[str, Confusion]) -> str:
    """One block of rows per model: 'model', 'true', then the counts."""
    rows = [{"model": name, **row} for name, t in tables.items() for row in t.csv_rows()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
