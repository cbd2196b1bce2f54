"""Paired bootstrap over images: the per-image matching kept once (matching.Evaluation), re-accumulated per resample.

A resample is a count per image (how often it was drawn). pycocotools' `accumulate` sorts all detections of a class by
score and walks the cumulative true/false positives; a resample only changes how much each image's detections
weigh, so the sort, the matching and the ignore flags are computed once and each resample re-weights them. Only
true-positive positions can set an interpolated precision (a false positive never raises precision, and recall only
moves at true positives), and of a run of true positives with no false positive between them only the last (its
precision is the run's highest), so the walk runs over run ends alone. Per resample and run end: true positives up
to it and false positives before it, both cumulative sums of the drawn images' counts gathered at the detections'
images; the false positives that are false at every threshold (most of them) are summed once for all thresholds.
Cost: resamples x (run ends + detections) per class and bucket, linear in images; work arrays are cut into blocks
of resamples that stay in cache, never resamples x images x detections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import buckets, coco
from .matching import FP, IGNORED, REC_THRS, TP, Evaluation

RESAMPLES = 1000
SEED = 0
SEARCH = False
BLOCK, MIN_BLOCK = 1 << 18, 64  # a work array: 2 MB (resamples x rows), at least 64 resamples


def delta_keys(sizes: str = buckets.SIZES[0]) -> tuple[str, ...]:
    """Flat metric keys ('AP_small@500', as coco.flatten) that get deltas with intervals, for `--sizes`."""
    return tuple(f"{key}@{md}" for md in coco.MAX_DETS for key, _, _ in buckets.keys(sizes))


DELTA_KEYS = delta_keys()


@dataclass
class _Group:
    """A (class, bucket, maxDets) group, prepared as sparse counts per image. Its rows are the run ends of every
    threshold, threshold after threshold; one product of a count matrix with the resamples' draws gives what each
    row adds to its threshold's running sums, for every resample at once."""

    npig: np.ndarray  # (I,) counted ground truth per image
    tp: object  # CSR (rows x images): true positives since its threshold's previous run end, up to this one
    den: object  # CSR (rows x images): those and the false positives since the previous run end
    starts: np.ndarray  # first row of each threshold that has run ends
    iou: np.ndarray  # its IoU threshold's index

    @property
    def rows(self) -> int:
        return self.tp.shape[0]


def _counts(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
    """CSR matrix counting (row, column) pairs."""
    from scipy.sparse import csr_matrix

    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def _prepare(image: np.ndarray, status: np.ndarray, npig: np.ndarray) -> _Group:
    """One group's sparse counts from its detections' images and statuses (T, N), in accumulate order."""
    entries, offset, sizes = {"tp": ([], []), "den": ([], [])}, 0, []
    for st in status:
        counted = np.flatnonzero(st != IGNORED)
        tp = st[counted] == TP
        end = counted[tp & np.r_[~tp[1:], True]]  # last true positive before a false one (or the end)
        tp_at = np.flatnonzero(st == TP)
        fp_at = np.flatnonzero(st == FP)
        fp_at = fp_at[fp_at < (end[-1] if len(end) else -1)]  # after the last run end nothing counts
        for key, at in (("tp", tp_at), ("den", np.concatenate([tp_at, fp_at]))):
            entries[key][0].append(np.searchsorted(end, at) + offset)  # the run end each counts towards
            entries[key][1].append(image[at])
        sizes.append(len(end))
        offset += len(end)
    sizes = np.array(sizes)
    tp, den = (_counts(np.concatenate(r), np.concatenate(c), (offset, len(npig))) for r, c in entries.values())
    return _Group(npig, tp, den, (np.cumsum(sizes) - sizes)[sizes > 0], np.flatnonzero(sizes))


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
        jobs = sorted(self.groups, key=lambda j: -self.groups[j].rows)  # the largest first: cores stay busy
        work, said, done = max(1, sum(self.groups[j].rows for j in jobs)), 0, {}
        with _one_thread_per_op() as one, ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            for j, result in zip(jobs, pool.map(one.job(lambda j: self._accumulate(self.groups[j], counts)), jobs)):
                done[j] = result
                if progress is not None:  # in resamples, as the groups' rows are done
                    now = round(sum(self.groups[k].rows for k in done) / work * len(counts))
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

    def _accumulate(self, g: _Group, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum of interpolated precision over recall thresholds (B, T), recall (B, T), defined (B,)) of one group."""
        b, n_t = len(counts), len(self.iou_thrs)
        npig = counts @ g.npig  # counted ground truth of each resample
        defined = npig > 0
        psum, recall = np.zeros((b, n_t)), np.zeros((b, n_t))
        if not defined.any() or not g.rows:
            return psum, recall, defined
        step = max(MIN_BLOCK, BLOCK // g.rows)
        for lo in range(0, b, step):
            hi = min(b, lo + step)
            _block(g, np.ascontiguousarray(counts[lo:hi].T, float), npig[lo:hi], psum[lo:hi], recall[lo:hi])
        psum[~defined], recall[~defined] = 0.0, 0.0
        return psum, recall, defined


def _block(g: _Group, wt: np.ndarray, npig: np.ndarray, psum: np.ndarray, recall: np.ndarray) -> None:
    """Matching._accumulate() of one block of resamples (columns of wt: times each image is drawn), into psum and
    recall.

    Interpolated precision at recall threshold r is the best precision from the first run end reaching r on; with
    c_j the number of thresholds reached at run end j, run end j is that first one for c_j - c_(j-1) of them, so
    the sum over thresholds is sum_j (best precision from j on) * (c_j - c_(j-1)); thresholds never reached add 0,
    as in pycocotools. Work arrays are (resamples x rows), so running sums and maxima run along memory."""
    import torch

    tp = _running(g.tp @ wt, g.starts)  # true positives up to each run end
    den = _running(g.den @ wt, g.starts)  # and false positives before it
    last = np.r_[g.starts[1:], tp.shape[1]] - 1
    recall[:, g.iou] = tp[:, last] / np.maximum(npig, 1)[:, None]
    den += np.spacing(1)
    precision = np.divide(tp, den, out=den)  # pycocotools' tp / (fp + tp + eps)
    reached = _reached(tp, npig[:, None])
    step = tp  # (its counts are spent)
    np.subtract(reached[:, 1:], reached[:, :-1], out=step[:, 1:])
    step[:, g.starts] = reached[:, g.starts]
    best = precision[:, ::-1].copy()  # the best precision from each run end on, threshold by threshold
    t, n = torch.from_numpy(best), best.shape[1]
    for lo, hi in zip(g.starts, np.r_[g.starts[1:], n]):
        part = t[:, n - hi:n - lo]
        part.copy_(torch.cummax(part, 1).values)
    best = best[:, ::-1]
    best *= step
    psum[:, g.iou] = np.add.reduceat(best, g.starts, axis=1)


class _one_thread_per_op:
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


def _running(rows_x_resamples: np.ndarray, starts) -> np.ndarray:
    """(resamples x rows) running sums of a (rows x resamples) array, starting afresh at the rows `starts`. float64
    sums of integers are exact below 2**53; torch's scan along memory is 15x numpy's cumsum here."""
    import torch

    x = np.ascontiguousarray(rows_x_resamples.T)
    t = torch.from_numpy(x)
    for lo, hi in zip(starts, [*starts[1:], x.shape[1]]):
        t[:, lo:hi].cumsum_(1)
    return x


def _reached(tp: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """How many of pycocotools' recall thresholds (np.linspace(0, 1, 101)) a true-positive count reaches in its
    float arithmetic (recall = tp / npig; reached where recall >= threshold); npig broadcasts against tp.

    Threshold r is reached exactly when r / 100 <= tp / npig, i.e. r <= floor(100 tp / npig) (a quotient of
    integers is never within an ulp of an integer it does not equal); where it equals one, k, pycocotools compares
    linspace's k * 0.01 with the division's k / 100, which differ in the last bit for some k (0.3, 0.7, ...)."""
    q = tp * 100
    q /= np.maximum(npig, 1)
    k = np.floor(q)
    on = np.nonzero(q == k)  # exactly on a threshold (rare): is it reached in float arithmetic?
    kk = k[on].astype(np.intp)
    k += 1
    k[on] -= REC_THRS[kk] > kk / 100  # (tp <= npig: k <= 100)
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
