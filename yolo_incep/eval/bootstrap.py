"""Paired bootstrap over images: pycocotools' per-image matching kept once, re-accumulated for every resample.

A resample is a count per image (how often it was drawn). pycocotools' `accumulate` sorts all detections of a
category by score and walks the cumulative true/false positives; a resample only changes how much each image's
detections weigh, so the sort, the matching and the ignore flags are computed once (`Matching.from_cocoeval`) and
each resample re-weights them. Only true-positive positions can set an interpolated precision (a false positive
never raises precision, and recall only moves at true positives), so the walk runs over those alone, all resamples
at once; false positives before each of them are per-image counts, mixed by one matrix product.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import coco

RESAMPLES = 1000
SEED = 0
# Deltas are reported for these flat metric keys ('AP_small@500' as in coco.flatten)
DELTA_KEYS = tuple(f"{k}@{md}" for md in coco.MAX_DETS
                   for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR"))


@dataclass
class _Group:
    """Detections of one (category, area range) in pycocotools' accumulate order, and per-image ground truth."""

    image: np.ndarray  # (N,) image index of each detection
    rank: np.ndarray  # (N,) rank by score inside its image (maxDets truncates on it)
    tp: np.ndarray  # (T, N) bool: matched to a counted ground-truth box
    fp: np.ndarray  # (T, N) bool: unmatched and not ignored
    npig: np.ndarray  # (I,) counted (not ignored) ground-truth boxes per image


@dataclass
class Matching:
    """One model's per-image COCO matching on one image list, ready to be scored on any resample of it."""

    images: int
    groups: dict[tuple[int, int], _Group]  # (category index, area index) -> group
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray

    @classmethod
    def from_cocoeval(cls, e) -> "Matching":
        """Per-image arrays from an evaluated pycocotools COCOeval (its evalImgs, computed at the largest maxDets)."""
        p = e.params
        n_img, n_area = len(p.imgIds), len(p.areaRng)
        groups = {}
        for k in range(len(p.catIds)):
            for a in range(n_area):
                start = (k * n_area + a) * n_img
                entries = [(i, x) for i, x in enumerate(e.evalImgs[start:start + n_img]) if x is not None]
                npig = np.zeros(n_img, np.int64)
                for i, x in entries:
                    npig[i] = np.count_nonzero(np.asarray(x["gtIgnore"]) == 0)
                if not entries:
                    groups[k, a] = _Group(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                          np.zeros((len(p.iouThrs), 0), bool), np.zeros((len(p.iouThrs), 0), bool),
                                          npig)
                    continue
                scores = np.concatenate([np.asarray(x["dtScores"], float) for _, x in entries])
                order = np.argsort(-scores, kind="mergesort")  # as accumulate: images in id order, stable on ties
                image = np.concatenate([np.full(len(x["dtScores"]), i) for i, x in entries])
                rank = np.concatenate([np.arange(len(x["dtScores"])) for _, x in entries])
                matched = np.concatenate([np.asarray(x["dtMatches"]).reshape(len(p.iouThrs), -1) for _, x in entries],
                                         axis=1) > 0
                ignored = np.concatenate([np.asarray(x["dtIgnore"]).reshape(len(p.iouThrs), -1) for _, x in entries],
                                         axis=1) > 0
                groups[k, a] = _Group(image[order], rank[order], (matched & ~ignored)[:, order],
                                      (~matched & ~ignored)[:, order], npig)
        return cls(n_img, groups, np.asarray(p.iouThrs, float), np.asarray(p.recThrs, float))

    def scores(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Every DELTA_KEYS metric for each resample (rows of `counts`, images x times drawn); NaN where undefined."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # products of (resamples x images) by (images x few hundred):
            return self._scores(counts)  # threads cost more than they give, and far more on a busy machine

    def _scores(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """scores() with BLAS on one thread; the (category, area, maxDets) groups share the cores."""
        from concurrent.futures import ThreadPoolExecutor

        counts = np.atleast_2d(np.asarray(counts, np.int64))
        n_t, n_r = len(self.iou_thrs), len(self.rec_thrs)
        t50, t75 = (int(np.argmin(np.abs(self.iou_thrs - t))) for t in (0.5, 0.75))
        last = coco.MAX_DETS[-1]
        # a smaller maxDets that truncates no image of a group gives the largest one's numbers: computed once
        jobs = [(k, a, md) for (k, a), g in self.groups.items() for md in coco.MAX_DETS
                if md == last or (g.rank >= md).any()]
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # numpy releases the GIL in the heavy parts
            done = dict(zip(jobs, pool.map(lambda j: self._accumulate(self.groups[j[:2]], counts, j[2]), jobs)))
        out = {}
        for md in coco.MAX_DETS:
            for a, area in enumerate(coco.AREAS):
                # over categories: sums over recall thresholds of precision (B, T), recall (B, T), defined count (B,)
                parts = [done.get((k, a_, md)) or done[k, a_, last] for k, a_ in self.groups if a_ == a]
                psum, rsum, defined = (sum(p[i] for p in parts) for i in range(3))
                defined = np.asarray(defined, float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    suffix = "" if area == "all" else f"_{area}"
                    out[f"AP{suffix}@{md}"] = np.where(defined > 0, psum.sum(1) / (defined * n_t * n_r), np.nan)
                    if area == "all":
                        out[f"AP50@{md}"] = np.where(defined > 0, psum[:, t50] / (defined * n_r), np.nan)
                        out[f"AP75@{md}"] = np.where(defined > 0, psum[:, t75] / (defined * n_r), np.nan)
                        out[f"AR@{md}"] = np.where(defined > 0, rsum.sum(1) / (defined * n_t), np.nan)
        return {k: out[k] for k in DELTA_KEYS}

    def _accumulate(self, g: _Group, counts: np.ndarray, max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum of interpolated precision over recall thresholds (B, T), recall (B, T), defined (B,)) of one group."""
        b, n_t = len(counts), len(self.iou_thrs)
        npig = counts @ g.npig  # counted ground truth of each resample
        defined = npig > 0
        psum, recall = np.zeros((b, n_t)), np.zeros((b, n_t))
        if not defined.any():
            return psum, recall, defined
        safe = np.where(defined, npig, 1).astype(float)[:, None]
        # smallest true-positive count whose recall reaches each threshold, in pycocotools' own float arithmetic
        need = np.ceil(self.rec_thrs[None, :] * safe)
        need = np.where((need - 1) / safe >= self.rec_thrs, need - 1, need)
        need = np.where(need / safe < self.rec_thrs, need + 1, need)
        kept = g.rank < max_det
        weights = counts.astype(np.float32)  # sums of counts stay exact integers in float32 (below 2**24)
        rows = np.arange(b)[:, None]
        for t in range(n_t):
            tp_at = np.flatnonzero(g.tp[t] & kept)
            if not len(tp_at):
                continue
            fp_at = np.flatnonzero(g.fp[t] & kept)
            n = len(tp_at)
            # per image: true positives up to and false positives before each true-positive position
            per_image = np.zeros((self.images, n + len(fp_at) + 1), np.float32)
            per_image[g.image[tp_at], np.arange(n)] = 1
            per_image[g.image[fp_at], n + 1 + np.arange(len(fp_at))] = 1
            per_image[:, :n] = np.cumsum(per_image[:, :n], axis=1)
            fp_before = np.cumsum(per_image[:, n:], axis=1)[:, np.searchsorted(fp_at, tp_at)]
            cum = weights @ np.concatenate([per_image[:, :n], fp_before], axis=1)  # the resamples' cumulative sums
            tpc, fpc = cum[:, :n].astype(float), cum[:, n:].astype(float)
            precision = tpc / (fpc + tpc + np.spacing(1))
            # first position reaching each needed count (capped at one past the total, which keeps the keys
            # sorted): all resamples in one search, rows offset apart
            total = tpc[:, -1:]
            span = total.max() + 2
            pos = np.searchsorted((tpc + rows * span).ravel(), (np.minimum(need, total + 1) + rows * span).ravel())
            # interpolated precision at threshold r: the best precision from its position on (segment maxima, then
            # a running maximum from the right); thresholds never reached get 0, as in pycocotools. A trailing 0
            # lets the last row's unreached thresholds point one past its end.
            flat = np.append(precision.ravel(), 0.0)
            seg = np.maximum.reduceat(flat, pos).reshape(b, -1)
            seg[pos.reshape(b, -1) - rows * n >= n] = 0.0
            q = np.maximum.accumulate(seg[:, ::-1], axis=1)[:, ::-1]
            psum[:, t] = np.where(defined, q.sum(1), 0.0)
            recall[:, t] = np.where(defined, total[:, 0] / safe[:, 0], 0.0)
        return psum, recall, defined


def resample_counts(images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, images) draw counts of a bootstrap over images; the same seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, images, size=(resamples, images))
    return np.stack([np.bincount(row, minlength=images) for row in draws])


def arm_scores(rows: list[dict[str, np.ndarray]], seed: int | tuple[int, ...] = SEED) -> dict[str, np.ndarray]:
    """Metric -> an arm's mean over its training seeds on each image resample, its seeds resampled too.

    A two-stage bootstrap: every image resample also draws the arm's k seeds with replacement (one draw for all
    metrics, seeded by `seed`). The drawn mean's deviation from the mean of all k is scaled by sqrt(k / (k - 1)),
    which makes its variance the seeds' s^2 / k: a plain bootstrap of k seeds gives (k - 1) / k of it, an interval
    18-29 % too narrow for 2-3 seeds. One seed: the image bootstrap alone (a spread of one cannot be estimated).
    """
    k = len(rows)
    if k == 1:
        return dict(rows[0])
    b = len(rows[0][DELTA_KEYS[0]])
    draws = np.random.default_rng(seed).integers(0, k, size=(b, k))
    scale = np.sqrt(k / (k - 1))
    out = {}
    for key in DELTA_KEYS:
        s = np.stack([r[key] for r in rows])  # (seeds, resamples)
        mean = s.mean(0)
        out[key] = mean + scale * (s[draws, np.arange(b)[:, None]].mean(1) - mean)
    return out


@dataclass
class Delta:
    """A paired difference to the baseline with its 95 % bootstrap interval; None with a reason where undefined."""

    value: float | None
    ci95: tuple[float, float] | None
    reason: str | None = None

    def to_json(self) -> dict:
        """The report.json form: {"value": d, "ci95": [lo, hi]} (plus "reason" when either is null)."""
        out = {"value": self.value, "ci95": None if self.ci95 is None else list(self.ci95)}
        return out | ({"reason": self.reason} if self.reason else {})

    def __str__(self) -> str:
        if self.value is None:
            return "n/a"
        ci = "" if self.ci95 is None else f" [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]"
        return f"{self.value:+.3f}{ci}"


def paired_delta(value: float | None, base: np.ndarray, other: np.ndarray) -> Delta:
    """Delta of a point difference `value` with the percentile interval of other - base over the resamples."""
    if value is None:
        return Delta(None, None, "undefined: no ground truth of this kind among the images")
    d = other - base
    d = d[np.isfinite(d)]
    if not d.size:
        return Delta(_round(value), None, "undefined in every resample")
    lo, hi = np.percentile(d, [2.5, 97.5])
    return Delta(_round(value), (_round(lo), _round(hi)))


def _round(v: float) -> float:
    """Six decimals (beyond any AP's precision), and no '-0.0' from a difference of 1e-17."""
    return round(float(v), 6) + 0.0
