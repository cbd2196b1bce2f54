"""Precision-recall curves by object size from an accumulated COCO evaluation, and their figure (pr_by_size.png)."""

from __future__ import annotations

import io

import numpy as np

SIZES = ("small", "medium", "large")


def pr_by_size(e, iou: float = 0.5) -> dict[str, list[float] | None]:
    """{size: precision at COCO's 101 recall points}, the mean over classes with ground truth of that size, at IoU
    `iou` and the largest maxDets of an accumulated COCOeval (its area under the curve is that bucket's AP50);
    None where no class has ground truth of that size."""
    p = e.params
    t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - iou)))
    precision = np.asarray(e.eval["precision"])
    out: dict[str, list[float] | None] = {}
    for size in SIZES:
        pr = precision[t, :, :, list(p.areaRngLbl).index(size), -1]  # recall points x classes; -1: no ground truth
        defined = (pr > -1).all(0)
        out[size] = pr[:, defined].mean(1).round(6).tolist() if defined.any() else None
    return out


def pr_png(curves: dict[str, dict[str, list[float] | None]], iou: float = 0.5) -> bytes:
    """One panel per size, one precision-recall curve per model (`curves`: {model: pr_by_size(...)})."""
    from matplotlib.figure import Figure  # no pyplot: the global backend stays untouched

    fig = Figure(figsize=(12, 4), layout="constrained")
    axes = fig.subplots(1, len(SIZES), sharey=True)
    recall = np.linspace(0, 1, 101)
    for ax, size in zip(axes, SIZES):
        for name, by_size in curves.items():
            pr = by_size[size]
            if pr is not None:
                ax.plot(recall, pr, label=f"{name} (AP{round(iou * 100)} {np.mean(pr):.3f})")
        ax.set_title(f"{size} objects, IoU {iou:g}")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {size} objects", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("precision (mean over classes)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()
