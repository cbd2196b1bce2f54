"""Paired bootstrap over images: the per-image matching kept once (matching.Evaluation), re-accumulated per resample.

A resample is a count per image (how often it was drawn). pycocotools' `accumulate` sorts all detections of a class by
score and walks the cumulative true/false positives; a resample only changes how much each image's detections
weigh, so the sort, the matching and the ignore flags are computed once and each resample re-weights them. Only
true-positive positions can set an interpolated precision (a false positive never raises precision, and recall only
moves at true positives), and of a run of true positives with no false positive between them only the last (its
precision is the run's highest), so the walk runs over run ends alone. Per resample and run end: the true positives
up to it (a running sum over its threshold's run ends of each run's true positives, weighed by the drawn images'
counts: a sparse product) and the detections counted up to it (one running sum over the run ends of all thresholds,
less those that its own threshold ignores). Work is resamples x (run ends + detections) per class and bucket: linear
in images; arrays are (run ends x resamples) blocks of about BLOCK elements, never resamples x images x detections.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from . import buckets, coco
from .matching import IGNORED, REC_THRS, TP, Evaluation

RESAMPLES = 1000
SEED = 0
BLOCK, MIN_BLOCK = 1 << 17, 64  # a work array: 1 MB (one threshold's run ends x resamples), at least 64
CHUNK = 32  # rows a suffix maximum steps through one at a time


def delta_keys(sizes: str = buckets.SIZES[0]) -> tuple[str, ...]:
    """Flat metric keys ('AP_small@500', as coco.flatten) that get deltas with intervals, for `--sizes`."""
    return tuple(f"{key}@{md}" for md in coco.MAX_DETS for key, _, _ in buckets.keys(sizes))


DELTA_KEYS = delta_keys()


@dataclass
class _Threshold:
    """One threshold's run ends, as sums over images: a run end's true positives are a running sum over `tp`'s rows
    (the true positives since the previous run end, per image); its detections counted, the union's running sum at
    `union_at` less the running sum over `gap`'s rows (detections counted at another threshold but ignored at this
    one) at `gap_at`."""

    iou: int  # the threshold's index
    tp: object  # CSR (run ends x images)
    union_at: np.ndarray  # per run end: its row among the run ends of every threshold
    gap: object  # CSR (run ends with such detections since the previous x images), or None: there are none
    gap_at: np.ndarray  # per run end: gap's rows up to it (a row of gap's running sum, led by 0)

    @property
    def rows(self) -> int:
        return self.tp.shape[0]


@dataclass
class _Group:
    """A (class, bucket, maxDets) group, prepared: the run ends of every threshold. Per resample a run end's true
    positives are a running sum over its threshold's true positives; its detections counted (true positives up to it
    and false positives before it) are those counted at any threshold up to it (one running sum for all thresholds,
    over the union of their run ends) less those ignored at its own."""

    npig: np.ndarray  # (I,) counted ground truth per image
    counted: object  # CSR (run ends of any threshold x images): detections counted at any threshold since the
    # previous such run end, up to this one
    thresholds: list[_Threshold]  # those with run ends

    @property
    def rows(self) -> int:
        return sum(th.rows for th in self.thresholds)


def _prepare(image: np.ndarray, status: np.ndarray, npig: np.ndarray) -> _Group:
    """One group's sums over images from its detections' images and statuses (T, N), in accumulate order."""
    from scipy.sparse import csr_matrix

    images = len(npig)
    counted_any = (status != IGNORED).any(0)
    ends = []
    for st in status:
        counted = np.flatnonzero(st != IGNORED)
        tp = st[counted] == TP
        ends.append(counted[tp & np.r_[~tp[1:], True]])  # last true positive before a false one (or the end)
    union = np.unique(np.concatenate(ends))
    thresholds = []
    for t, (st, end) in enumerate(zip(status, ends)):
        if not len(end):
            continue
        tp, gap = np.flatnonzero(st == TP), np.flatnonzero(counted_any & (st == IGNORED))
        tp_upto = np.searchsorted(tp, end, "right")  # (the last run end is the last true positive)
        gap_upto = np.searchsorted(gap, end, "right")
        more = np.flatnonzero(np.diff(np.r_[0, gap_upto]))  # run ends with such detections since the previous
        gap_rows = None if not len(more) else csr_matrix(
            (np.ones(gap_upto[-1]), image[gap[:gap_upto[-1]]], np.r_[0, gap_upto[more]]), shape=(len(more), images))
        thresholds.append(_Threshold(
            t, csr_matrix((np.ones(len(tp)), image[tp], np.r_[0, tp_upto]), shape=(len(end), images)),
            np.searchsorted(union, end), gap_rows, np.searchsorted(more, np.arange(len(end)), "right")))
    at = np.flatnonzero(counted_any)
    at = at[at <= (union[-1] if len(union) else -1)]
    rows = np.searchsorted(union, at)  # the run end (of any threshold) each counts towards
    return _Group(npig, csr_matrix((np.ones(len(at)), (rows, image[at])), shape=(len(union), images)), thresholds)


@dataclass
class Matching:
    """One model's matching on one image list, ready to be scored on any resample of it."""

    images: int
    buckets: tuple[buckets.Bucket, ...]
    groups: dict[tuple[int, int, int], _Group]  # (class, bucket, maxDets) -> group; absent: as the largest maxDets
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray

    @classmethod
    def of(cls, e: Evaluation) -> "Matching":
        """The resampling form of an evaluation (its per-image matches, at every maxDets of coco.MAX_DETS)."""
        last = coco.MAX_DETS[-1]
        groups = {}
        for (k, a), g in e.groups.items():
            image, rank = e.dets.image[g.det], e.dets.rank[g.det]
            for md in coco.MAX_DETS:
                if md == last or (rank >= md).any():  # a maxDets that cuts nothing scores as the largest
                    keep = rank < md
                    groups[k, a, md] = _prepare(image[keep], g.status[:, keep], g.npig)
        return cls(e.images, e.buckets, groups, np.asarray(e.params.iouThrs), np.asarray(e.params.recThrs))

    def scores(self, counts: np.ndarray, progress=None) -> dict[str, np.ndarray]:
        """Every delta key of this matching's buckets for each resample (rows of `counts`, images x times drawn);
        NaN where undefined (no counted ground truth in the resample). `progress(n)`, if given, is called as the
        work of n resamples is done."""
        from concurrent.futures import ThreadPoolExecutor

        counts = np.atleast_2d(np.asarray(counts, np.int64))
        drawn = np.ascontiguousarray(counts.T, float)  # (images x resamples): what the sums over images weigh
        jobs = sorted(self.groups, key=lambda j: -self.groups[j].rows)  # the largest first: cores stay busy
        work, rows, said, done = max(1, sum(self.groups[j].rows for j in jobs)), 0, 0, {}
        with _OneThreadPerOp() as one, ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            for j, result in zip(jobs, pool.map(one.job(lambda j: self._accumulate(self.groups[j], counts, drawn)),
                                                jobs)):
                done[j], rows = result, rows + self.groups[j].rows
                if progress is not None:  # in resamples, as the groups' rows are done
                    now = round(rows / work * len(counts))
                    progress(now - said)
                    said = now
        last = coco.MAX_DETS[-1]
        n_r, out = len(self.rec_thrs), {}
        for md in coco.MAX_DETS:
            for a, bucket in enumerate(self.buckets):
                parts = [done.get((k, a_, md)) or done[k, a_, last] for k, a_, m in done if a_ == a and m == last]
                psum, rsum, defined = (sum(p[i] for p in parts) for i in range(3))
                defined = np.asarray(defined, float)
                for key, metric, b in buckets.keys("both"):
                    if b is not bucket:
                        continue
                    at = slice(None) if metric.iou is None else [int(np.argmin(np.abs(self.iou_thrs - metric.iou)))]
                    v = psum[:, at].mean(1) / n_r if metric.kind == "AP" else rsum[:, at].mean(1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        out[f"{key}@{md}"] = np.where(defined > 0, v / defined, np.nan)
        return out

    def _accumulate(self, g: _Group, counts: np.ndarray, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
        """(sum of interpolated precision over recall thresholds (B, T), recall (B, T), defined (B,)) of one group;
        `drawn` is counts transposed."""
        b, n_t = len(counts), len(self.iou_thrs)
        npig = counts @ g.npig  # counted ground truth of each resample
        defined = npig > 0
        psum, recall = np.zeros((b, n_t)), np.zeros((b, n_t))
        if not defined.any() or not g.rows:
            return psum, recall, defined
        step = max(MIN_BLOCK, BLOCK // max(th.rows for th in g.thresholds))
        for lo in range(0, b, step):
            hi = min(b, lo + step)
            _block(g, np.ascontiguousarray(drawn[:, lo:hi]), np.maximum(npig[lo:hi], 1).astype(float),
                   psum[lo:hi], recall[lo:hi])
        psum[~defined], recall[~defined] = 0.0, 0.0
        return psum, recall, defined


def _block(g: _Group, drawn: np.ndarray, npig: np.ndarray, psum: np.ndarray, recall: np.ndarray) -> None:
    """Matching._accumulate() of one block of resamples (columns of `drawn`: times each image is drawn; `npig`:
    their counted ground truth, at least 1), into psum, recall.

    Work arrays are (run ends x resamples): running sums and maxima run down the rows, each step a vector over the
    resamples (numpy's and torch's scans along memory elementwise are several times slower). Interpolated precision
    at recall threshold r is the best precision from the first run end reaching r on; with c_j the number of
    thresholds reached at run end j, run end j is that first one for c_j - c_(j-1) of them, so the sum over
    thresholds is sum_j (best precision from j on) * (c_j - c_(j-1)); thresholds never reached add 0, as in
    pycocotools. The terms are summed in j's order (bincount), as ever: the same numbers to the last bit."""
    import torch

    b = drawn.shape[1]
    counted = g.counted @ drawn  # counted at any threshold, per run end of any
    torch.from_numpy(counted).cumsum_(0)
    for th in g.thresholds:
        tp = th.tp @ drawn
        torch.from_numpy(tp).cumsum_(0)
        recall[:, th.iou] = tp[-1] / npig
        n, chunk = th.rows, max(1, min(CHUNK, math.isqrt(th.rows)))
        precision = np.empty((-(-n // chunk) * chunk, b))  # padded to whole chunks of rows, with 0
        precision[n:] = 0.0
        den = np.take(counted, th.union_at, axis=0, out=precision[:n], mode="clip")  # (clip: no bounds check)
        if th.gap is not None:
            gap = np.zeros((th.gap.shape[0] + 1, b))
            gap[1:] = th.gap @ drawn
            torch.from_numpy(gap).cumsum_(0)
            den -= np.take(gap, th.gap_at, axis=0, mode="clip")
        den += np.spacing(1)
        np.divide(tp, den, out=den)  # pycocotools' tp / (fp + tp + eps)
        reached = _reached(tp, npig)  # less 1
        step = tp  # (its counts are spent)
        np.subtract(reached[1:], reached[:-1], out=step[1:])
        step[0] = reached[0] + 1  # >= 1: recall threshold 0 is reached from the first run end on
        _suffix_max(precision, chunk)
        at = np.flatnonzero(step != 0)  # (a bool array: numpy's nonzero of floats is four times slower)
        psum[:, th.iou] = np.bincount(at % b, precision.ravel()[at] * step.ravel()[at], minlength=b)


def _suffix_max(x: np.ndarray, chunk: int) -> None:
    """Running maximum from the last row up, in place, of an array whose rows are whole chunks of `chunk` rows:
    within the chunks a row at a time, then across them (numpy's accumulate down the rows is several times slower)."""
    x = x.reshape(-1, chunk, x.shape[1])
    for i in range(chunk - 2, -1, -1):
        np.maximum(x[:, i], x[:, i + 1], out=x[:, i])
    if len(x) > 1:
        after = np.maximum.accumulate(x[:0:-1, 0], axis=0)[::-1]  # the best of every later chunk
        np.maximum(x[:-1], after[:, None], out=x[:-1])


class _OneThreadPerOp:
    """Within: BLAS and torch ops on one thread each (the groups share the cores between them instead). torch's
    setting is per thread under OpenMP: `job` wraps work for a worker thread."""

    def __enter__(self):
        import torch
        from threadpoolctl import threadpool_limits

        self._torch, self._limits = torch.get_num_threads(), threadpool_limits(1, user_api="blas")
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self._torch)
        self._limits.restore_original_limits()

    @staticmethod
    def job(fn):
        import torch

        def run(*args):
            torch.set_num_threads(1)
            return fn(*args)

        return run


def _reached(tp: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """How many of pycocotools' recall thresholds (np.linspace(0, 1, 101)) a true-positive count reaches in its
    float arithmetic (recall = tp / npig; reached where recall >= threshold), less 1; tp is (run ends x resamples),
    npig (at least 1) per resample; tp is overwritten.

    Threshold r is reached exactly when r / 100 <= tp / npig, i.e. r <= floor(100 tp / npig) (a quotient of
    integers is never within an ulp of an integer it does not equal); where it equals one, k, pycocotools compares
    linspace's k * 0.01 with the division's k / 100, which differ in the last bit for ten k (35, 41, ..., 95). Such
    a k is 100 tp / npig only where npig is a multiple of 10 (100 / gcd(k, 100) divides it): those resamples alone
    are looked at."""
    q = tp
    q *= 100
    q /= npig
    k = np.floor(q)
    cols = np.flatnonzero(npig % 10 == 0)
    if len(cols):
        rows, at = np.nonzero(q[:, cols] == k[:, cols])  # exactly on a threshold: reached in float arithmetic?
        at = cols[at]
        kk = k[rows, at].astype(np.intp)
        k[rows, at] -= REC_THRS[kk] > kk / 100  # (tp <= npig: k <= 100)
    return k


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
    b = len(next(iter(rows[0].values())))
    draws = np.random.default_rng(seed).integers(0, k, size=(b, k))
    scale = np.sqrt(k / (k - 1))
    out = {}
    for key in rows[0]:
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
