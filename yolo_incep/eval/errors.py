"""Where AP is lost, per object size: TIDE's error types (dbolya/tide), read from a pycocotools evaluation.

TIDE (Bolya et al., ECCV 2020) sorts every false positive at IoU 0.5 into the first type that fits:
  loc   right class, best same-class IoU in [0.1, 0.5]       (would be a hit if better localised)
  cls   wrong class, IoU >= 0.5 with a box of another class   (would be a hit with the right class)
  dupe  right class, IoU >= 0.5 with an already matched box   (a duplicate)
  bkg   IoU <= 0.1 with every box                             (fired on background)
  both  anything else                                         (wrong class and badly localised)
and every ground-truth box that no detection matched and no loc/cls error could fix as `miss`. The AP an error
type costs is AP50 with that type fixed (a loc/cls error becomes the hit of its box when it is that box's
highest-scoring fixer, other errors of the type are dropped, fixed misses leave the ground truth) minus AP50.

Matching, ignored boxes and size buckets are COCO's own (compare's evaluation, matching.py: its per-image matches at
IoU 0.5 are reused), so the base of each bucket is exactly COCO's AP50 for that bucket; a detection COCO ignores (on an ignored box, or
unmatched and outside the bucket's area range) is no error, and a fix onto a box outside the bucket drops the
detection, as COCO would then ignore it. Two choices follow COCO rather than TIDE: the detection cap is COCO's
(maxDets per class per image, not per image), and a class only counts where the bucket holds its ground truth.
"""

from __future__ import annotations

import numpy as np

from .matching import FP, IGNORED, TP

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
POS_IOU, BG_IOU = 0.5, 0.1  # TIDE's foreground and background thresholds
RECALLS = np.linspace(0, 1, 101)  # COCO's grid (TIDE's is k / 100: equal up to float rounding of 0.3, 0.7, ...)
_NONE, _TYPE = -1, {t: i for i, t in enumerate(ERROR_TYPES)}


def breakdown(e, pos: float = POS_IOU, bg: float = BG_IOU) -> dict[str, dict[str, float | None]]:
    """{bucket: {'AP50': COCO's AP at IoU `pos`, 'cls': AP gained by fixing cls errors, ...}} per size bucket of an
    evaluation (matching.Evaluation: 'all', then COCO's and/or AI-TOD's buckets), at its largest maxDets; None where
    the bucket holds no ground truth."""
    t = int(np.argmin(np.abs(np.asarray(e.params.iouThrs) - pos)))
    if abs(e.params.iouThrs[t] - pos) > 1e-9:
        raise ValueError(f"IoU {pos} is not among the evaluation's thresholds {list(e.params.iouThrs)}")
    d, truth = e.dets, e.truth
    real = ~truth.crowd  # ignored boxes: COCO neither counts nor penalises them, TIDE likewise
    best_iou = np.maximum(d.same_iou, d.other_iou)
    pd, pg, pv = e.pairs
    close = (pv >= pos) & real[pg]  # same-class overlaps that could make a duplicate
    order = np.lexsort((d.rank, d.image, -d.score))  # COCO's order: score, then image, then rank in image
    out = {}
    for a, bucket in enumerate(e.buckets):
        status = np.full(len(d.image), IGNORED, np.int8)
        for (k, a_), g in e.groups.items():
            if a_ == a:
                status[g.det] = g.status[t]
        used = truth.matched[t, a] & real
        counted = ~truth.ignored[a] & real
        out[bucket.key] = _bucket(d, truth, status, used, counted, best_iou, (pd[close], pg[close], pv[close]),
                                  order, len(e.names), pos, bg)
    return out


def _bucket(d, truth, status, used, counted, best_iou, close, order, classes: int, pos: float, bg: float) -> dict:
    """The breakdown of one bucket from every detection's status at IoU `pos` (matching's FP/TP/IGNORED)."""
    tp, fp = status == TP, status == FP
    pd, pg, _ = close
    on_used = used[pg]
    dupe = np.zeros(len(tp), bool)
    dupe[pd[on_used]] = True  # overlaps >= pos a box of its class that another detection took
    err = np.select([fp & (bg <= d.same_iou) & (d.same_iou <= pos), fp & (d.other_iou >= pos), fp & dupe,
                     fp & (best_iou <= bg), fp],
                    [_TYPE["loc"], _TYPE["cls"], _TYPE["dupe"], _TYPE["bkg"], _TYPE["both"]], _NONE)
    target = np.where(err == _TYPE["loc"], d.same_gt, np.where(err == _TYPE["cls"], d.other_gt, -1))
    fixer = (target >= 0) & ~used[np.maximum(target, 0)]  # loc/cls errors on a box nobody matched
    # TIDE fixes only the highest-scoring such error of each box (the first in score order); the others are dropped
    cand = np.flatnonzero(fixer)
    cand = cand[np.lexsort((cand, -d.score[cand], target[cand]))]
    first = cand[np.r_[True, target[cand][1:] != target[cand][:-1]]] if len(cand) else cand
    best = np.zeros(len(tp), bool)
    best[first] = True
    usable = np.zeros(len(used), bool)
    usable[target[fixer]] = True
    fix_cls = np.where(target >= 0, truth.cat[np.maximum(target, 0)], d.cat)
    fix_tp = best & counted[np.maximum(target, 0)] & (target >= 0)  # a fix onto a box outside the bucket: ignored
    npig = np.bincount(truth.cat[counted], minlength=classes)
    missed = np.bincount(truth.cat[counted & ~used & ~usable], minlength=classes)
    keep = order[(tp | fp)[order]]  # counted detections in COCO's order; COCO's ignored ones count for nothing
    cls, tp, err, fix_cls, fix_tp = d.cat[keep], tp[keep], err[keep], fix_cls[keep], fix_tp[keep]
    present = np.flatnonzero(npig > 0)
    if not len(present):
        return {"AP50": None} | dict.fromkeys(ERROR_TYPES)
    base = _map(cls, tp, npig, present)
    out = {"AP50": base}
    for name in ERROR_TYPES:
        if name == "miss":
            out[name] = max(_map(cls, tp, npig - missed, present) - base, 0.0)
            continue
        hit = err == _TYPE[name]
        fixed = hit & fix_tp
        kept = ~hit | fixed
        out[name] = max(_map(np.where(fixed, fix_cls, cls)[kept], (tp | fixed)[kept], npig, present) - base, 0.0)
    return out  # TIDE clips each gain at 0


def _map(cls: np.ndarray, tp: np.ndarray, npig: np.ndarray, classes: np.ndarray) -> float:
    """Mean over `classes` of COCO's 101-point AP of score-ordered hits; a class left without ground truth scores 0
    if it still has detections and drops out if not (TIDE's rule)."""
    aps = []
    for k in classes:
        hits = tp[cls == k]
        if npig[k] <= 0:
            if len(hits):
                aps.append(0.0)
            continue
        aps.append(ap101(hits, npig[k]))
    return float(np.mean(aps)) if aps else 0.0


def ap101(hits: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated AP of score-ordered detections (`hits`: True for a hit) against n_gt boxes."""
    if not len(hits):
        return 0.0
    tps = np.cumsum(hits)
    recall, precision = tps / n_gt, tps / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    idx = np.searchsorted(recall, RECALLS, side="left")
    return float(np.where(idx < len(hits), precision[np.minimum(idx, len(hits) - 1)], 0.0).mean())
