"""Precision-recall curves by object size from an accumulated COCO evaluation, and their figure (pr_by_size.png)."""

from __future__ import annotations

import io

import numpy as np

from . import buckets


def pr_by_size(e, iou: float = 0.5) -> dict[str, list[float] | None]:
    """{bucket: precision at COCO's 101 recall points}, the mean over classes with ground truth in that size bucket,
    at IoU `iou` and the largest maxDets, for every size bucket of an accumulated evaluation (its area under the
    curve is that bucket's AP50); None where no class has ground truth of that size."""
    p = e.params
    t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - iou)))
    precision = np.asarray(e.eval["precision"])
    out: dict[str, list[float] | None] = {}
    for a, size in enumerate(p.areaRngLbl):
        if size == buckets.ALL.key:
            continue
        pr = precision[t, :, :, a, -1]  # recall points x classes; -1: no ground truth
        defined = (pr > -1).all(0)
        out[size] = pr[:, defined].mean(1).round(6).tolist() if defined.any() else None
    return out


def pr_png(curves: dict[str, dict[str, list[float] | None]], iou: float = 0.5) -> bytes:
    """One panel per size bucket (a row per family: COCO's, AI-TOD's), one precision-recall curve per model
    (`curves`: {model: pr_by_size(...)})."""
    from matplotlib.figure import Figure  # no pyplot: the global backend stays untouched

    present = {k for by_size in curves.values() for k in by_size}
    rows = [[b for b in buckets.BUCKETS if b.family == f and b.key in present]
            for f in dict.fromkeys(b.family for b in buckets.BUCKETS)]
    rows = [r for r in rows if r]
    width = max(len(r) for r in rows)
    fig = Figure(figsize=(4 * width, 4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), width, sharey=True, squeeze=False)
    recall = np.linspace(0, 1, 101)
    for row, axs in zip(rows, axes):
        for ax in axs[len(row):]:
            ax.set_visible(False)
        for ax, bucket in zip(axs, row):
            for name, by_size in curves.items():
                pr = by_size.get(bucket.key)
                if pr is not None:
                    ax.plot(recall, pr, label=f"{name} (AP{round(iou * 100)} {np.mean(pr):.3f})")
            ax.set_title(f"{bucket.label}, IoU {iou:g}")
            ax.set_xlabel("recall")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no ground truth of this size", ha="center", va="center", transform=ax.transAxes)
        axs[0].set_ylabel("precision (mean over classes)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
