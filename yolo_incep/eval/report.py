"""The typed `compare` report and its files: report.json, report.csv, ap_by_size.png, gt.json, predictions_*.json
(and, from analysis.py, pr_by_size.png and confusion_small.csv)."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes
from . import buckets, coco
from .analysis import Analysis, table_rows, write_files
from .bootstrap import DELTA_KEYS, Delta, delta_keys
from .results import Results


@dataclass
class ModelRow:
    """One evaluated model: one checkpoint, whole-image or sliced inference."""

    name: str
    source: str
    arm: str
    sliced: bool
    params: int | None  # None: unknown (saved predictions that do not say)
    gflops: float | None
    latency_ms: float | None
    detections: int
    ignored_detections: int
    metrics: dict  # coco.metrics(): "maxDets" {"100": {...}, "500": {...}}, "per_class_AP_small" (+ "cross_check")
    predict_s: float | None = None
    predict_fps: float | None = None  # frames per second of whole-frame prediction (a checkpoint's rows only)
    delta: dict[str, Delta] | None = None  # against the baseline arm; None for the baseline's own rows
    analysis: Analysis | None = None  # errors by size, PR curves, small-object confusion
    export: dict | None = None  # an exported model: format, precision, fixed imgsz/batch, runtime (models.Exported)

    @property
    def flat(self) -> dict[str, float | None]:
        """Every metric under its flat key ('AP_small@500', 'AP_small[car]')."""
        return coco.flatten(self.metrics)

    def to_json(self) -> dict:
        """The report.json entry (the keys of earlier versions, then 'arm' and 'delta')."""
        out = {"name": self.name, "source": self.source, "sliced": self.sliced, "params": self.params,
               "gflops": self.gflops, "latency_ms": self.latency_ms, "detections": self.detections,
               "ignored_detections": self.ignored_detections}
        out |= {} if self.predict_s is None else {"predict_s": self.predict_s, "predict_fps": self.predict_fps}
        out |= self.metrics | {"arm": self.arm} | _deltas_json(self.delta)
        out |= {} if self.export is None else {"export": self.export}
        return out | ({} if self.analysis is None else self.analysis.to_json())


@dataclass
class ArmSummary:
    """An arm: its rows (one per training seed), their mean and spread, and the delta of the mean to the baseline."""

    name: str
    rows: list[str]
    sliced: bool
    mean: dict[str, float | None]  # DELTA_KEYS
    sd: dict[str, float | None]  # sample standard deviation over seeds; None for a single seed
    delta: dict[str, Delta] | None = None

    def to_json(self) -> dict:
        """The report.json entry."""
        return {"name": self.name, "rows": self.rows, "sliced": self.sliced, "seeds": len(self.rows),
                "mean": self.mean, "sd": self.sd} | _deltas_json(self.delta)


@dataclass
class Contrast:
    """An extra paired difference between two arms (e.g. P2 Inception vs stock P2), beside those to the baseline."""

    arm: str
    reference: str
    delta: dict[str, Delta]

    def to_json(self) -> dict:
        """The report.json entry."""
        return {"arm": self.arm, "reference": self.reference} | _deltas_json(self.delta)

    def __str__(self) -> str:
        keys = [k for k in DELTA_KEYS if k.startswith(("AP@", "AP_small@"))]
        return f"{self.arm} vs {self.reference}: " + ", ".join(f"{k} {self.delta[k]}" for k in keys)


def _deltas_json(delta: dict[str, Delta] | None) -> dict:
    return {} if delta is None else {"delta": {k: d.to_json() for k, d in delta.items()}}


@dataclass
class CompareReport:
    """Everything `compare` measured; str() is the printed table, to_json() the report.json content."""

    data: str
    split: str
    imgsz: int
    device: str
    conf: float
    iou: float
    max_det: int
    images: int
    classes: list[str]
    instances: int
    ignored_instances: int
    ignored_regions: int
    models: list[ModelRow] = field(default_factory=list)
    arms: list[ArmSummary] = field(default_factory=list)
    contrasts: list[Contrast] = field(default_factory=list)  # asked for with `versus`; the baseline's are in rows
    bootstrap: dict | None = None  # resamples, seed, method (None until the deltas are computed)
    complete: bool = False  # False while models are still being evaluated (or after a failure): the rows so far
    nms_free: bool = False  # end-to-end models scored on their one-to-one head, without NMS (compare --nms-free)
    sizes: str = buckets.SIZES[0]  # size buckets: 'coco', 'aitod' or 'both' (compare --sizes)

    def to_json(self) -> dict:
        """report.json: the keys of earlier versions in their order, then 'arms', 'bootstrap', 'complete'."""
        return {"data": self.data, "split": self.split, "imgsz": self.imgsz, "device": self.device,
                "conf": self.conf, "iou": self.iou, "max_det": self.max_det, "images": self.images,
                "classes": self.classes, "instances": self.instances, "ignored_instances": self.ignored_instances,
                "ignored_regions": self.ignored_regions,
                "latency": f"median ms of a fused forward pass, batch 1, {self.imgsz}x{self.imgsz}, after warm-up "
                           "(sliced rows: median ms per image end to end)",
                "models": [m.to_json() | _analysis_delta(m, baseline(self, m)) for m in self.models],
                "arms": [a.to_json() for a in self.arms], "contrasts": [c.to_json() for c in self.contrasts],
                "bootstrap": self.bootstrap, "complete": self.complete, "nms_free": self.nms_free,
                "sizes": {b.key: {"label": b.label, "area_px2": list(b.area)} for b in buckets.sized(self.sizes)},
                "evaluator": "compare's own (yolo_incep.eval.matching): pycocotools' rules, tested equal to it"}

    def __str__(self) -> str:
        return format_table(self)


def baseline(report: CompareReport, m: ModelRow) -> ModelRow:
    """The row `m` is compared with: the first row of the same kind (whole-image or sliced)."""
    return next(r for r in report.models if r.sliced == m.sliced)


def _analysis_delta(m: ModelRow, base: ModelRow) -> dict:
    if m is base or m.analysis is None or base.analysis is None:
        return {}
    return m.analysis.delta_json(base.analysis)


def arm_summary(name: str, rows: list[ModelRow]) -> ArmSummary:
    """Mean and spread of an arm's rows over DELTA_KEYS (None where a row has no value)."""
    mean, sd = {}, {}
    for k in (k for k in DELTA_KEYS if k in rows[0].flat):  # the buckets of --sizes
        values = [r.flat[k] for r in rows]
        ok = None not in values
        mean[k] = round(statistics.fmean(values), 6) if ok else None
        sd[k] = round(statistics.stdev(values), 6) if ok and len(values) > 1 else None
    return ArmSummary(name, [r.name for r in rows], rows[0].sliced, mean, sd)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _columns(report: CompareReport) -> list[tuple[str, list[ModelRow], ArmSummary | None]]:
    """Table columns: every row, and after the rows of a several-seed arm its mean (ArmSummary)."""
    arms = {a.name: a for a in report.arms}
    cols: list[tuple[str, list[ModelRow], ArmSummary | None]] = []
    for m in report.models:
        cols.append((m.name, [m], None))
        arm = next((a for a in arms.values() if a.rows[-1] == m.name and len(a.rows) > 1), None)
        if arm is not None:
            rows = [r for r in report.models if r.name in arm.rows]
            cols.append((f"{arm.name} mean", rows, arm))
    return cols


def _cost(rows: list[ModelRow], attr: str, scale: float = 1) -> float | None:
    values = [getattr(r, attr) for r in rows]
    return None if None in values else statistics.fmean(values) * scale


def format_table(report: CompareReport) -> str:
    """Side-by-side table, one column per model (and per several-seed arm mean); deltas against the baseline.

    Cost deltas are relative; AP/AR deltas are absolute, with the 95 % paired-bootstrap interval in brackets.
    """
    cols = _columns(report)
    base = [m for m in report.models if not m.sliced][:1] or report.models[:1]
    lines: list[list[str]] = [["", *[c[0] for c in cols]]]
    costs = [("params (M)", "params", 1e-6), ("GFLOPs", "gflops", 1), ("latency ms/img", "latency_ms", 1)]
    if any(m.predict_fps for m in report.models):
        costs.append(("predict frames/s", "predict_fps", 1))
    for label, attr, scale in costs:
        b = _cost(base, attr, scale) if base else None
        lines.append([label, *[_cost_cell(_cost(rows, attr, scale), b, rows == base) for _, rows, _ in cols]])
    for md in coco.MAX_DETS:
        for k, _, _ in buckets.keys(report.sizes):
            key = f"{k}@{md}"
            if any(key in m.flat for m in report.models):
                lines.append([key, *[_metric_cell(key, rows, arm) for _, rows, arm in cols]])
    base_flat = base[0].flat if base else {}
    for c in report.classes if any(b.key == "small" for b in buckets.sized(report.sizes)) else ():
        key = f"AP_small[{c}]"
        cells = []
        for _, rows, arm in cols:
            if arm:  # per-class values are not bootstrapped: seed rows only
                cells.append("")
                continue
            v, b = rows[0].flat.get(key), base_flat.get(key)
            cells.append(_fmt(v) if v is None or b is None or rows == base else f"{v:.3f} ({v - b:+.3f})")
        lines.append([f"{key}@{coco.MAX_DETS[-1]}", *cells])
    if any(m.analysis for m in report.models):  # seed rows only, as per-class values
        lines += table_rows([None if arm else rows[0].analysis for _, rows, arm in cols],
                            [None if arm else baseline(report, rows[0]).analysis for _, rows, arm in cols])
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines]
    title = (f"{report.data} [{report.split}]: {report.images} images, {report.instances} objects "
             f"({report.ignored_instances} ignored), imgsz {report.imgsz}, {report.device}")
    notes = []
    if report.bootstrap:
        notes.append(f"deltas: to the baseline (first model), [95 % interval] from a paired bootstrap over images "
                     f"({report.bootstrap['resamples']} resamples, seed {report.bootstrap['seed']}); "
                     f"an arm of several seeds also resamples its seeds")
    notes += [f"contrast {c}" for c in report.contrasts]
    if not report.complete:
        notes.append("INCOMPLETE: not every model was evaluated")
    return "\n".join([title, *text, *notes])


def _cost_cell(v: float | None, base: float | None, baseline: bool) -> str:
    if v is None:
        return "-"
    text = f"{v:.2f}"
    return text if baseline or not base else f"{text} ({(v / base - 1) * 100:+.1f}%)"


def _metric_cell(key: str, rows: list[ModelRow], arm: ArmSummary | None) -> str:
    """A row's value, or an arm's mean±sd, with its delta and interval where one was computed."""
    if arm is not None:
        v, sd, delta = arm.mean.get(key), arm.sd.get(key), (arm.delta or {}).get(key)
        text = _fmt(v) if v is None or sd is None else f"{v:.3f}±{sd:.3f}"
    else:
        row = rows[0]
        v, delta = row.flat.get(key), (row.delta or {}).get(key)
        text = _fmt(v)
    return text if v is None or delta is None else f"{text} ({delta})"


def csv_text(report: CompareReport) -> str:
    """One row per model, then one per several-seed arm mean: cost, metrics under flat keys, deltas with intervals."""
    rows = []
    for m in report.models:
        rows.append({"name": m.name, "arm": m.arm, "seeds": 1, "source": m.source, "sliced": m.sliced,
                     "params": m.params, "gflops": m.gflops, "latency_ms": m.latency_ms} | m.flat
                    | _delta_columns(m.delta, report.sizes) | _analysis_columns(m, baseline(report, m)))
    for a in report.arms:
        if len(a.rows) > 1:
            rows.append({"name": f"{a.name} mean", "arm": a.name, "seeds": len(a.rows), "source": " ".join(a.rows),
                         "sliced": a.sliced} | a.mean | {f"sd_{k}": v for k, v in a.sd.items()}
                        | _delta_columns(a.delta, report.sizes))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _analysis_columns(m: ModelRow, base: ModelRow) -> dict:
    """AP50 by size and the AP50 lost per error type, each with its difference to the baseline row."""
    if m.analysis is None:
        return {}
    flat, b = m.analysis.flat, (base.analysis.flat if base.analysis and base is not m else {})
    return flat | {f"delta_{k}": None if v is None or b.get(k) is None else round(v - b[k], 6) for k, v in flat.items()}


def _delta_columns(delta: dict[str, Delta] | None, sizes: str) -> dict:
    out = {}
    for k in delta_keys(sizes):
        d = (delta or {}).get(k)
        lo, hi = d.ci95 if d is not None and d.ci95 is not None else (None, None)
        out |= {f"delta_{k}": None if d is None else d.value, f"delta_{k}_lo": lo, f"delta_{k}_hi": hi}
    return out


def plot_png(report: CompareReport) -> bytes:
    """ap_by_size.png: the figure of ap_figure()."""
    buf = io.BytesIO()
    ap_figure(report).savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def ap_figure(report: CompareReport):
    """Grouped bars of AP per size bucket and arm (mean over seeds): a row of panels per bucket family (COCO's,
    AI-TOD's), a column per maxDets.

    Error bars: the 95 % interval of the paired difference to the baseline, placed on the model's bar (baseline
    value + interval). A size with no ground truth (pycocotools' -1) has no bar and is marked 'n/a', never 0.
    """
    from matplotlib.figure import Figure  # no pyplot: the global backend stays untouched

    arms = report.arms or [arm_summary(m.name, [m]) for m in report.models]
    families = [[b for b in buckets.sized(report.sizes) if b.family == f]
                for f in dict.fromkeys(b.family for b in buckets.sized(report.sizes))]
    fig = Figure(figsize=(4 + 2.5 * len(arms), 4 * len(families)), layout="constrained")
    grid = fig.subplots(len(families), len(coco.MAX_DETS), sharey=True, squeeze=False)
    width = 0.8 / len(arms)
    for axes, sizes in zip(grid, families):
        for ax, md in zip(axes, coco.MAX_DETS):
            for i, bucket in enumerate(sizes):
                key = f"AP_{bucket.key}@{md}"
                if all(a.mean.get(key) is None for a in arms):  # undefined depends on the ground truth alone
                    ax.text(i, 0.002, "no ground truth\nof this size", ha="center", va="bottom", fontsize=7,
                            color="0.4")
                    continue
                for j, a in enumerate(arms):
                    x, v, d = i + (j - (len(arms) - 1) / 2) * width, a.mean[key], (a.delta or {}).get(key)
                    if v is None:
                        continue
                    err = None
                    if d is not None and d.ci95 is not None and d.value is not None:
                        err = [[max(0.0, d.value - d.ci95[0])], [max(0.0, d.ci95[1] - d.value)]]
                    label = a.name + (f" (mean of {len(a.rows)})" if len(a.rows) > 1 else "")
                    bar = ax.bar([x], [v], width, color=f"C{j}", label=label, yerr=err, capsize=2)
                    ax.bar_label(bar, fmt="%.3f", fontsize=7)
            ax.set_xticks(range(len(sizes)), [b.label for b in sizes], fontsize=7)
            ax.set_xlim(-0.5, len(sizes) - 0.5)
            ax.set_title(f"AP by object size, maxDets {md}")
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))  # AP noise of 1e-6 must not fill the axis like a result
        axes[0].set_ylabel("AP@[.5:.95]")
    handles, labels = grid[0, -1].get_legend_handles_labels()
    grid[0, -1].legend(handles[:len(arms)], labels[:len(arms)], fontsize=8)
    if report.bootstrap:
        fig.suptitle("error bars: 95 % paired-bootstrap interval of the difference to the baseline", fontsize=8)
    return fig


def write_report(report: CompareReport, out: Path) -> None:
    """report.csv, confusion_small.csv and report.json, each written atomically (report.json last); once the report
    is complete, also the figures ap_by_size.png and pr_by_size.png (a second each: not after every model)."""
    atomic_write_bytes(out / "report.csv", csv_text(report))
    write_files({m.name: m.analysis for m in report.models if m.analysis is not None}, out, report.complete)
    if report.complete:
        atomic_write_bytes(out / "ap_by_size.png", plot_png(report))
    # compact: kept reports count against the repository's size
    atomic_write_bytes(out / "report.json", json.dumps(report.to_json(), separators=(",", ":")))


def write_json(path: Path, obj) -> None:
    """gt.json / predictions_<name>.json (a dict, or results.Results): COCO files any evaluator reads, written
    atomically."""
    atomic_write_bytes(path, obj.json() if isinstance(obj, Results) else json.dumps(obj))
