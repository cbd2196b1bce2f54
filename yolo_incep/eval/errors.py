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

Matching, ignored boxes and size buckets are pycocotools' own (its per-image matches at IoU 0.5 are reused), so
the base of each bucket is exactly COCO's AP50 for that bucket; a detection COCO ignores (on an ignored box, or
unmatched and outside the bucket's area range) is no error, and a fix onto a box outside the bucket drops the
detection, as COCO would then ignore it. Two choices follow COCO rather than TIDE: the detection cap is COCO's
(maxDets per class per image, not per image), and a class only counts where the bucket holds its ground truth.
"""

from __future__ import annotations

import numpy as np

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
POS_IOU, BG_IOU = 0.5, 0.1  # TIDE's foreground and background thresholds
RECALLS = np.linspace(0, 1, 101)  # COCO's grid (TIDE's is k / 100: equal up to float rounding of 0.3, 0.7, ...)
_NONE, _TYPE = -1, {t: i for i, t in enumerate(ERROR_TYPES)}


def breakdown(e, pos: float = POS_IOU, bg: float = BG_IOU) -> dict[str, dict[str, float | None]]:
    """{bucket: {'AP50': COCO's AP at IoU `pos`, 'cls': AP gained by fixing cls errors, ...}} per pycocotools area
    range ('all', 'small', 'medium', 'large') of an evaluated (evaluate() run) pycocotools COCOeval, at its largest
    maxDets; None where the bucket holds no ground truth."""
    p = e.params
    t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - pos)))
    if abs(p.iouThrs[t] - pos) > 1e-9:
        raise ValueError(f"IoU {pos} is not among the evaluation's thresholds {list(p.iouThrs)}")
    n_img = len(p.imgIds)
    out = {}
    for a, label in enumerate(p.areaRngLbl):
        per_image: dict[int, list[dict]] = {}
        for k in range(len(p.catIds)):
            for ev in e.evalImgs[(k * len(p.areaRng) + a) * n_img:(k * len(p.areaRng) + a + 1) * n_img]:
                if ev is not None:
                    per_image.setdefault(ev["image_id"], []).append(ev)
        out[label] = _bucket(e, per_image, t, pos, bg, {c: i for i, c in enumerate(p.imgIds)})
    return out


def _bucket(e, per_image: dict[int, list[dict]], t: int, pos: float, bg: float, img_rank: dict) -> dict:
    """The breakdown of one area range from its pycocotools per-image, per-class matches."""
    cats = {c: k for k, c in enumerate(e.params.catIds)}
    cols = {n: [] for n in ("cls", "score", "img", "rank", "tp", "err", "fix_cls", "fix_tp")}
    npig = np.zeros(len(cats), int)
    missed = np.zeros(len(cats), int)
    for image_id, evs in per_image.items():
        d = _image(e, evs, t, pos, bg, cats)
        d["img"] = np.full(len(d["cls"]), img_rank[image_id])
        for n in cols:
            cols[n].append(d[n])
        npig += np.bincount(d["gt_cls"][d["counted"]], minlength=len(cats))
        missed += np.bincount(d["gt_cls"][d["missed"]], minlength=len(cats))
    c = {n: np.concatenate(v) if v else np.zeros(0) for n, v in cols.items()}
    order = np.lexsort((c["rank"], c["img"], -c["score"]))  # COCO's order: score, then image, then rank in image
    c = {n: v[order] for n, v in c.items()}
    classes = np.flatnonzero(npig > 0)
    if not len(classes):
        return {"AP50": None} | dict.fromkeys(ERROR_TYPES)
    base = _map(c["cls"], c["tp"].astype(bool), npig, classes)
    out = {"AP50": base}
    for name in ERROR_TYPES:
        if name == "miss":
            out[name] = max(_map(c["cls"], c["tp"].astype(bool), npig - missed, classes) - base, 0.0)
            continue
        hit = c["err"] == _TYPE[name]
        fixed = hit & c["fix_tp"].astype(bool)
        keep = ~hit | fixed
        cls = np.where(fixed, c["fix_cls"], c["cls"])[keep]
        out[name] = max(_map(cls, (c["tp"].astype(bool) | fixed)[keep], npig, classes) - base, 0.0)  # TIDE clips
    return out


def _image(e, evs: list[dict], t: int, pos: float, bg: float, cats: dict) -> dict:
    """Outcome and error type of each counted detection, and the boxes, of one image in one area range."""
    from pycocotools import mask as mask_utils

    dt_ids, dt_cls, dt_rank, dt_match, dt_ign = [], [], [], [], []
    gt_ids, gt_cls, gt_counted, gt_used = [], [], [], []
    for ev in evs:
        k = cats[ev["category_id"]]
        dt_ids += ev["dtIds"]
        dt_cls += [k] * len(ev["dtIds"])
        dt_rank += range(len(ev["dtIds"]))
        dt_match += list(ev["dtMatches"][t] > 0)
        dt_ign += list(ev["dtIgnore"][t].astype(bool))
        for g, ign, m in zip(ev["gtIds"], ev["gtIgnore"], ev["gtMatches"][t]):
            if not e.cocoGt.anns[g]["iscrowd"]:  # ignored boxes: COCO neither counts nor penalises, TIDE likewise
                gt_ids.append(g)
                gt_cls.append(k)
                gt_counted.append(not ign)
                gt_used.append(m > 0)
    dt_cls, gt_cls = np.array(dt_cls, int), np.array(gt_cls, int)
    gt_counted, gt_used = np.array(gt_counted, bool), np.array(gt_used, bool)
    score = np.array([e.cocoDt.anns[i]["score"] for i in dt_ids], float)
    tp = np.array(dt_match, bool) & ~np.array(dt_ign, bool)
    fp = ~np.array(dt_match, bool) & ~np.array(dt_ign, bool)
    # a zero-IoU dummy box (class -1) keeps every max/argmax defined when the image has no ground truth
    iou = np.zeros((len(dt_ids), len(gt_ids) + 1))
    if dt_ids and gt_ids:
        boxes = [e.cocoDt.anns[i]["bbox"] for i in dt_ids], [e.cocoGt.anns[i]["bbox"] for i in gt_ids]
        iou[:, :-1] = mask_utils.iou(*boxes, [0] * len(gt_ids))
    same = dt_cls[:, None] == np.append(gt_cls, -1)[None, :]
    s_iou, o_iou = iou * same, iou * ~same
    s_arg, o_arg = s_iou.argmax(1), o_iou.argmax(1)
    s_max, o_max = s_iou.max(1), o_iou.max(1)
    dupe_iou = (s_iou * np.append(gt_used, False)[None, :]).max(1)
    err = np.select([fp & (bg <= s_max) & (s_max <= pos), fp & (o_max >= pos), fp & (dupe_iou >= pos),
                     fp & (iou.max(1) <= bg), fp],
                    [_TYPE["loc"], _TYPE["cls"], _TYPE["dupe"], _TYPE["bkg"], _TYPE["both"]], _NONE)
    target = np.where(err == _TYPE["loc"], s_arg, np.where(err == _TYPE["cls"], o_arg, -1))
    fixer = (target >= 0) & ~np.append(gt_used, True)[target]  # loc/cls errors on a box nobody matched
    # TIDE fixes only the highest-scoring such error of each box (first in score order); the others are dropped
    best = np.zeros(len(dt_ids), bool)
    cand = np.flatnonzero(fixer)
    if len(cand):
        cand = cand[np.argsort(-score[cand], kind="stable")]
        best[cand[np.unique(target[cand], return_index=True)[1]]] = True
    usable = np.zeros(len(gt_ids), bool)
    usable[target[fixer]] = True
    fix_cls = np.where(target >= 0, np.append(gt_cls, -1)[target], dt_cls)
    fix_tp = best & np.append(gt_counted, False)[target]  # a fix onto a box outside the bucket: COCO ignores it
    k = tp | fp  # COCO's ignored detections count for nothing
    return {"cls": dt_cls[k], "score": score[k], "rank": np.array(dt_rank, int)[k], "tp": tp[k], "err": err[k],
            "fix_cls": fix_cls[k], "fix_tp": fix_tp[k], "gt_cls": gt_cls, "counted": gt_counted,
            "missed": gt_counted & ~gt_used & ~usable}


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
