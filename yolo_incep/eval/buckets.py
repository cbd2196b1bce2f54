"""What `compare` measures: object-size buckets and metrics, one table each (a bucket or a metric is one row).

Buckets are pycocotools area ranges: a box is in [lo, hi] (both ends included, as pycocotools compares) of its area
in px^2 (ground truth: its `area`; detections: w * h). COCO's are small / medium / large; AI-TOD's are those of its
official evaluator (AI-TOD's COCO API, cocoapi-aitod: `aitodpycocotools` Params.setDetParams; mmdetection's
AITODCocoMetric alike): very tiny [0, 8^2], tiny [8^2, 16^2], small [16^2, 32^2], medium [32^2, 1e5^2]. The AI-TOD paper
describes its objects as 2-8, 8-16, 16-32 and 32-64 px (sqrt of the area); its evaluator, whose numbers the
tiny-object literature reports, has no lower bound on very tiny and no upper bound on medium, and so have we.
AI-TOD's keys are the literature's short names (AP_vt, AP_t, AP_s, AP_m) so they never collide with COCO's.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_AREA = 1e5 ** 2  # pycocotools' "no upper bound"


@dataclass(frozen=True)
class Bucket:
    """A size bucket: metric keys end in `_<key>` (AP_small, AR_vt), `area` = [lo, hi] px^2, both ends included."""

    key: str
    family: str  # 'coco' or 'aitod': what `--sizes` selects
    area: tuple[float, float]
    label: str  # how tables and plots name it


ALL = Bucket("all", "", (0, MAX_AREA), "all")
BUCKETS = (
    Bucket("small", "coco", (0, 32 ** 2), "small (< 32 px)"),
    Bucket("medium", "coco", (32 ** 2, 96 ** 2), "medium (32-96 px)"),
    Bucket("large", "coco", (96 ** 2, MAX_AREA), "large (>= 96 px)"),
    Bucket("vt", "aitod", (0, 8 ** 2), "AI-TOD very tiny (< 8 px)"),
    Bucket("t", "aitod", (8 ** 2, 16 ** 2), "AI-TOD tiny (8-16 px)"),
    Bucket("s", "aitod", (16 ** 2, 32 ** 2), "AI-TOD small (16-32 px)"),
    Bucket("m", "aitod", (32 ** 2, MAX_AREA), "AI-TOD medium (>= 32 px)"),
)
SIZES = ("both", "coco", "aitod")  # --sizes choices; the first is the default


@dataclass(frozen=True)
class Metric:
    """A number read from the accumulated evaluation: AP (interpolated precision) or AR (recall), averaged over the
    IoU thresholds or at one, for all objects or (per_bucket) for every size bucket too."""

    name: str
    kind: str  # 'AP' or 'AR'
    iou: float | None = None  # None: the mean over COCO's ten thresholds 0.50:0.95
    per_bucket: bool = False


METRICS = (Metric("AP", "AP", per_bucket=True), Metric("AP50", "AP", 0.5), Metric("AP75", "AP", 0.75),
           Metric("AR", "AR", per_bucket=True))


def buckets(sizes: str = SIZES[0]) -> tuple[Bucket, ...]:
    """'all' then the size buckets of `sizes` ('coco', 'aitod' or 'both'), in BUCKETS order."""
    if sizes not in SIZES:
        raise ValueError(f"sizes {sizes!r}: expected one of {', '.join(SIZES)}")
    return (ALL, *(b for b in BUCKETS if sizes in ("both", b.family)))


def keys(sizes: str = SIZES[0]) -> tuple[tuple[str, Metric, Bucket], ...]:
    """(key, metric, bucket) of every number per maxDets: all objects first ('AP', 'AP50', 'AP75', 'AR'), then each
    per-bucket metric for every bucket ('AP_small', 'AP_medium', ..., 'AR_small', ...)."""
    out = [(m.name, m, ALL) for m in METRICS]
    return tuple(out + [(f"{m.name}_{b.key}", m, b) for m in METRICS if m.per_bucket for b in sized(sizes)])


def sized(sizes: str = SIZES[0]) -> tuple[Bucket, ...]:
    """The size buckets of `sizes` (without 'all')."""
    return buckets(sizes)[1:]
