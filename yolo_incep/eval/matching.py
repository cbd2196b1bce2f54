"""COCO box evaluation (pycocotools' evaluate + accumulate) over all images at once: compare's one evaluator.

compare needs more than the accumulated AP: its bootstrap re-weights the per-image matches and its error breakdown
classifies them. pycocotools gives them (`evalImgs`) from Python loops over images x classes x sizes x detections x
boxes (10 s for 60 VisDrone frames); faster-coco-eval matches in C++ but keeps the matches in C++ objects
(`_evalImgs_cpp`, not readable from Python), so running it means running a second evaluator for the matches. Here
the matching follows pycocotools' rules exactly, vectorized:

- IoU by pycocotools' own C routine (`pycocotools.mask.iou`, crowd boxes as intersection over the detection), one
  call per image, so every IoU and so every match at a threshold's edge is pycocotools' own;
- per (image, class): detections by score (stable, ties in file order), at most maxDets[-1]; each in turn takes,
  among the boxes of its class it may still take (not yet matched at this threshold and bucket, or crowd) with
  IoU >= the threshold, a box counted in the bucket if there is one, else an ignored one (crowd, or outside the
  bucket's area range): the highest IoU, ties to the later box (pycocotools' `>=` over boxes sorted counted-first,
  stable). Every (image, class) advances together, one detection rank per step, for all thresholds and buckets;
- unmatched detections outside a bucket's area range are ignored in it; accumulate as pycocotools'.

Tested equal to pycocotools' evalImgs and accumulated arrays on random scenes (tests/test_eval_coco.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .buckets import Bucket
from .results import Results

IOU_THRS = np.linspace(0.5, 0.95, 10)  # pycocotools' Params, built the same way (bit-identical thresholds)
REC_THRS = np.linspace(0.0, 1.0, 101)
FP, TP, IGNORED = 0, 1, 2  # a detection's status at one threshold in one bucket


@dataclass
class Params:
    """What the evaluation used, under pycocotools' Params names (coco.metrics reads either)."""

    iouThrs: np.ndarray  # noqa: N815 (pycocotools' names)
    recThrs: np.ndarray  # noqa: N815
    maxDets: list[int]  # noqa: N815
    catIds: list[int]  # noqa: N815
    areaRng: list[list[float]]  # noqa: N815
    areaRngLbl: list[str]  # noqa: N815


@dataclass
class Detections:
    """Kept detections (at most maxDets[-1] per image and class), sorted by image, class, then rank (score order)."""

    image: np.ndarray  # (N,) image index (position in the sorted image ids)
    cat: np.ndarray  # (N,) class index (position in the sorted category ids)
    rank: np.ndarray  # (N,) rank by score in its (image, class)
    score: np.ndarray  # (N,)
    area: np.ndarray  # (N,) w * h, as pycocotools' loadRes
    # best IoU with a non-crowd box of the image: of the same class, of another class (and which box, -1: none)
    same_iou: np.ndarray
    same_gt: np.ndarray
    other_iou: np.ndarray
    other_gt: np.ndarray


@dataclass
class Truth:
    """Ground-truth boxes sorted by image, class, then file order; `ignored[a]`: not counted in bucket a."""

    image: np.ndarray
    cat: np.ndarray
    crowd: np.ndarray
    ignored: np.ndarray  # (A, G) bool
    matched: np.ndarray  # (T, A, G) bool: taken by a detection at threshold t in bucket a (pycocotools' gtMatches)


@dataclass
class Group:
    """One (class, bucket): its detections that count at some threshold, in accumulate order (score, image, rank)."""

    det: np.ndarray  # (N,) index into Detections
    status: np.ndarray  # (T, N) int8: FP, TP or IGNORED at each threshold
    npig: np.ndarray  # (I,) counted ground-truth boxes per image


@dataclass
class Evaluation:
    """An evaluated and accumulated box evaluation: pycocotools' `params` and `eval` arrays, plus the matches."""

    params: Params
    eval: dict  # 'precision' (T, R, K, A, M) and 'recall' (T, K, A, M), -1 where undefined, as pycocotools
    names: list[str]  # category names, in catIds order
    images: int
    buckets: tuple[Bucket, ...]
    dets: Detections
    truth: Truth
    groups: dict[tuple[int, int], Group]  # (class index, bucket index)
    # candidate pairs: detection, box and IoU of every same-class overlap >= the lowest threshold
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    matches: dict  # 'det': detections with a candidate; 'gt': (T, A, len(det)) the box each took, -1: none


def evaluate(gt: dict, detections, buckets: tuple[Bucket, ...], max_dets: tuple[int, ...],
             progress=None) -> Evaluation:
    """pycocotools' bbox evaluate() and accumulate() of COCO results (a list or results.Results) with these size
    buckets (areaRng) and maxDets; `progress(n)`, if given, is called as images are matched."""
    img_ids = sorted({im["id"] for im in gt["images"]})
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    names = {c["id"]: c["name"] for c in gt["categories"]}
    img_index, cat_index = {v: i for i, v in enumerate(img_ids)}, {v: k for k, v in enumerate(cat_ids)}
    area_rng = np.array([b.area for b in buckets], float)
    truth, g_box, g_order = _truth(gt, img_index, cat_index, area_rng)
    dets, d_box = _detections(detections, np.array(img_ids, np.int64), np.array(cat_ids, np.int64), max(max_dets))
    pairs = _overlaps(dets, d_box, truth, g_box, len(img_ids), progress)
    match = _match(dets, truth, pairs, area_rng, g_order)
    groups = _groups(dets, truth, match, area_rng, len(img_ids), len(cat_ids))
    params = Params(IOU_THRS.copy(), REC_THRS.copy(), sorted(max_dets), cat_ids, area_rng.tolist(),
                    [b.key for b in buckets])
    precision, recall = accumulate(groups, dets, params, len(cat_ids), len(buckets))
    return Evaluation(params, {"precision": precision, "recall": recall}, [names[c] for c in cat_ids], len(img_ids),
                      tuple(buckets), dets, truth, groups, pairs, match)


def _truth(gt: dict, img_index: dict, cat_index: dict, area_rng: np.ndarray):
    """Truth (sorted), its boxes, and each box's position in file order within its (image, class)."""
    anns = [a for a in gt["annotations"] if a["image_id"] in img_index and a["category_id"] in cat_index]
    image = np.array([img_index[a["image_id"]] for a in anns], np.int64)
    cat = np.array([cat_index[a["category_id"]] for a in anns], np.int64)
    order = np.lexsort((np.arange(len(anns)), cat, image))
    box = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)[order]
    area = np.array([a["area"] for a in anns], float)[order]
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)[order]
    ignored = crowd[None, :] | (area[None, :] < area_rng[:, :1]) | (area[None, :] > area_rng[:, 1:])
    t = Truth(image[order], cat[order], crowd, ignored, np.zeros((len(IOU_THRS), len(area_rng), len(anns)), bool))
    return t, box, np.arange(len(anns))  # sorted by file order within (image, class): the position is the order


def _detections(detections, img_ids: np.ndarray, cat_ids: np.ndarray, max_det: int):
    """Detections sorted by image, class, score (stable), cut at max_det per (image, class); and their boxes."""
    res = Results.of(detections)
    res = res.take(np.isin(res.category_id, cat_ids))  # pycocotools evaluates its categories only
    known = np.isin(res.image_id, img_ids)
    if not known.all():  # pycocotools' loadRes refuses them too
        raise ValueError(f"detection of image id {res.image_id[np.argmin(known)]}, which the ground truth does not have")
    image, cat = np.searchsorted(img_ids, res.image_id), np.searchsorted(cat_ids, res.category_id)
    score, box = res.score, res.bbox
    order = np.lexsort((np.arange(len(res)), -score, cat, image))
    image, cat, score, box = image[order], cat[order], score[order], box[order]
    first = np.r_[True, (np.diff(image) != 0) | (np.diff(cat) != 0)] if len(res) else np.zeros(0, bool)
    start = np.flatnonzero(first)
    rank = np.arange(len(res)) - np.repeat(start, np.diff(np.r_[start, len(res)]))
    keep = rank < max_det
    image, cat, score, box, rank = image[keep], cat[keep], score[keep], box[keep], rank[keep]
    n = len(image)
    none = np.full(n, -1, np.int64)
    d = Detections(image, cat, rank, score, box[:, 2] * box[:, 3], np.zeros(n), none.copy(), np.zeros(n), none.copy())
    return d, box


def _overlaps(d: Detections, d_box: np.ndarray, t: Truth, g_box: np.ndarray, images: int, progress=None):
    """Same-class (detection, box, IoU) pairs with IoU >= the lowest threshold, and each detection's best overlaps
    with non-crowd boxes (same class, other classes), image by image with pycocotools' IoU."""
    from pycocotools import mask as mask_utils

    floor = min(IOU_THRS[0], 1 - 1e-10)
    d_start = np.searchsorted(d.image, np.arange(images + 1))
    g_start = np.searchsorted(t.image, np.arange(images + 1))
    pd, pg, pv = [], [], []
    for i in range(images):
        if progress is not None and i % 16 == 15:
            progress(16)
        d0, d1, g0, g1 = d_start[i], d_start[i + 1], g_start[i], g_start[i + 1]
        if d0 == d1 or g0 == g1:
            continue
        iou = np.asarray(mask_utils.iou(d_box[d0:d1], g_box[g0:g1], t.crowd[g0:g1].astype(np.uint8)))
        same = d.cat[d0:d1, None] == t.cat[None, g0:g1]
        r, c = np.nonzero(same & (iou >= floor))
        pd.append(r + d0)
        pg.append(c + g0)
        pv.append(iou[r, c])
        real = np.where(t.crowd[None, g0:g1], -1.0, iou)  # crowd boxes: no TIDE error is about them
        for found, best, other in ((np.where(same, real, -1.0), d.same_iou, d.same_gt),
                                   (np.where(same, -1.0, real), d.other_iou, d.other_gt)):
            arg = found.argmax(1)
            top = found[np.arange(d1 - d0), arg]
            best[d0:d1] = np.maximum(top, 0.0)
            other[d0:d1] = np.where(top >= 0, arg + g0, -1)
    if progress is not None:
        progress(images % 16)
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    return cat(pd, np.int64), cat(pg, np.int64), cat(pv, float)


def _match(d: Detections, t: Truth, pairs, area_rng: np.ndarray, g_order: np.ndarray) -> dict[int, np.ndarray]:
    """pycocotools' greedy matching for every threshold and bucket: {detection: (T, A) matched box or -1}, for
    detections with a candidate; fills t.matched. One step per detection rank, all (image, class) groups at once
    (each holds one detection of that rank, and no box is in two groups)."""
    pd, pg, pv = pairs
    n_t, n_a = len(IOU_THRS), len(area_rng)
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[:, None, None]
    order = np.lexsort((g_order[pg], pd, d.rank[pd]))  # by rank, then detection, then the box's file order
    pd, pg, pv = pd[order], pg[order], pv[order]
    cand_det = np.unique(pd)
    out = np.full((n_t, n_a, len(cand_det)), -1, np.int64)
    bounds = np.searchsorted(d.rank[pd], np.arange(d.rank.max(initial=-1) + 2))
    for r in range(len(bounds) - 1):
        s = slice(bounds[r], bounds[r + 1])
        if s.start == s.stop:
            continue
        dd, gg, vv = pd[s], pg[s], pv[s]
        starts = np.r_[0, np.flatnonzero(np.diff(dd)) + 1]
        owner = np.cumsum(np.r_[0, np.diff(dd) != 0])  # which detection of this step each pair belongs to
        ign = t.ignored[:, gg][None]  # (1, A, P)
        free = ~t.matched[:, :, gg] | t.crowd[gg]
        elig = free & (vv >= thr)  # (T, A, P)
        counted = elig & ~ign
        # a counted box if the detection has one, else an ignored one (pycocotools stops at the first ignored box
        # once it holds a counted match: boxes are sorted counted first)
        use = elig & (~ign | ~np.logical_or.reduceat(counted, starts, axis=2)[:, :, owner])
        best = np.maximum.reduceat(np.where(use, vv, -1.0), starts, axis=2)[:, :, owner]
        win = use & (vv == best)
        pick = np.maximum.reduceat(np.where(win, np.arange(len(dd)), -1), starts, axis=2)  # last among ties
        tt, aa, kk = np.nonzero(pick >= 0)
        p = pick[tt, aa, kk]
        t.matched[tt, aa, gg[p]] = True
        out[tt, aa, np.searchsorted(cand_det, dd[starts[kk]])] = gg[p]
    return {"det": cand_det, "gt": out}


def _groups(d: Detections, t: Truth, match: dict, area_rng: np.ndarray, images: int, classes: int):
    """Per (class, bucket): detections counted at some threshold, in accumulate order, with their status."""
    n_t, n_a = len(IOU_THRS), len(area_rng)
    order = np.lexsort((d.rank, d.image, -d.score, d.cat))  # pycocotools' accumulate: score, then image, then rank
    cls_start = np.searchsorted(d.cat[order], np.arange(classes + 1))
    outside = (d.area[None, :] < area_rng[:, :1]) | (d.area[None, :] > area_rng[:, 1:])  # (A, N)
    cand, hit_gt = match["det"], match["gt"]
    groups = {}
    for a in range(n_a):
        counted = ~t.ignored[a]
        npig = np.bincount(t.cat[counted] * images + t.image[counted], minlength=classes * images)
        base = np.where(outside[a], IGNORED, FP).astype(np.int8)
        status = np.repeat(base[None], n_t, axis=0)
        g = hit_gt[:, a]  # (T, candidates)
        status[:, cand] = np.where(g >= 0, np.where(t.ignored[a][np.maximum(g, 0)], IGNORED, TP), base[cand])
        for k in range(classes):
            idx = order[cls_start[k]:cls_start[k + 1]]
            st = status[:, idx]
            keep = (st != IGNORED).any(0)
            groups[k, a] = Group(idx[keep], st[:, keep], npig[k * images:(k + 1) * images])
    return groups


def accumulate(groups: dict, d: Detections, p: Params, classes: int, areas: int):
    """pycocotools' accumulate(): precision (T, R, K, A, M) and recall (T, K, A, M), -1 where a (class, bucket)
    has no counted ground truth."""
    n_t, n_r, n_m = len(p.iouThrs), len(p.recThrs), len(p.maxDets)
    precision = -np.ones((n_t, n_r, classes, areas, n_m))
    recall = -np.ones((n_t, classes, areas, n_m))
    for (k, a), g in groups.items():
        npig = int(g.npig.sum())
        if not npig:
            continue
        for m, md in enumerate(p.maxDets):
            st = g.status[:, d.rank[g.det] < md]
            tp = np.cumsum(st == TP, axis=1, dtype=float)
            fp = np.cumsum(st == FP, axis=1, dtype=float)
            nd = st.shape[1]
            recall[:, k, a, m] = tp[:, -1] / npig if nd else 0.0
            if not nd:
                precision[:, :, k, a, m] = 0.0
                continue
            rc = tp / npig
            pr = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[:, ::-1], axis=1)[:, ::-1]  # the envelope
            for ti in range(n_t):
                idx = np.searchsorted(rc[ti], p.recThrs, side="left")
                precision[ti, :, k, a, m] = np.where(idx < nd, pr[ti, np.minimum(idx, nd - 1)], 0.0)
    return precision, recall
