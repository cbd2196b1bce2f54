"""`yolo-incep compare`: several models on one dataset split, COCO AP/AP_small side by side with their cost.

Jobs live in their own modules: models.py (arms, loading, prediction, SAHI), ../cost.py (params, GFLOPs, latency),
coco.py and matching.py (evaluation), bootstrap.py (paired intervals), analysis.py (errors by size, PR curves,
confusion), report.py (the typed report and its files), progress.py (the progress bar). This module checks the
settings, runs them in order and writes what was computed after every model.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from ..data.yolo import read_data_yaml, refuse_inside_dataset
from ..errors import InputError
from ..files import folder_lock
from ..limits import check_device, check_image_memory
from . import bootstrap, buckets, coco, paired, predictions
from .analysis import Analysis
from .progress import Progress
from .models import export_format, has_sahi, load_export, load_model, max_stride, parse_arms, predict, predict_sliced
from .report import CompareReport, Contrast, ModelRow, arm_summary, write_json, write_report
from .report import format_table  # noqa: F401  (demo and scripts print the table through compare)
from ..cost import device_name, latency_ms, model_cost

# data YAML keys that are not splits (Ultralytics' own reserved ones)
NOT_SPLITS = {"names", "nc", "path", "download", "yaml_file", "channels"}
# the files a run writes into --out (gt.json, predictions_<row>.json, report.write_report's): an earlier run's are
# removed before a new run writes, so that one folder never holds two runs
OUTPUTS = ("gt.json", "predictions_*.json", "report.json", "report.csv", "ap_by_size.png", "pr_by_size.png",
           "confusion_small.csv")


def compare_models(models: list[str], data: str | Path, split: str = "val", imgsz: int = 640,
                   out: str | Path | None = None, device: str = "cpu", batch: int = 8, conf: float = 0.001,
                   iou: float = 0.7, max_det: int = 500, slice_size: int = 0, slice_overlap: float = 0.2,
                   latency_runs: int = 10, resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED,
                   versus: dict[str, str] | None = None, verbose: bool = True,
                   map_classes_by_index: bool = False, nms_free: bool = False, ids_by_position: bool = False,
                   sizes: str = buckets.SIZES[0], cross_check: str | None = None,
                   paired_with: list[str] | None = None) -> CompareReport:
    """Evaluate every model on one split and return the typed report (written to `out` when given).

    `models`: '[NAME=]SOURCE[,SOURCE...]' (checkpoint paths, model YAML names, exported models or saved predictions;
    several sources are one arm's training seeds); the first arm is the baseline. `slice_size` > 0 adds SAHI
    sliced-inference rows. Every non-baseline row and arm gets deltas with 95 % intervals from a paired bootstrap over
    images (`resamples`, `seed`); `versus` {arm: reference arm} adds those paired differences too (report.contrasts),
    and `paired_with` ('A=B' or 'A=B,C=D') those of arms that are one model in two forms (paired.py). Everything that
    can be checked is checked before the first prediction. `nms_free`: end-to-end models (YOLO26) predict with their
    one-to-one head and no NMS, as `yolo val nms=False`; others with their only head and NMS, as always. `sizes`:
    the size buckets ('coco', 'aitod' or 'both'). `cross_check` ('pycocotools' or 'faster_coco_eval'): also run
    that library on every row and record (and warn about) the largest difference of the accumulated arrays.
    A progress bar goes to stderr when it is a terminal and `verbose`.
    `ids_by_position`: a plain results file without compare's gt.json beside it has image id i = the i-th image.
    """
    check_settings(imgsz=imgsz, batch=batch, max_det=max_det, slice_size=slice_size, latency_runs=latency_runs,
                   conf=conf, iou=iou, slice_overlap=slice_overlap, resamples=resamples)
    if sizes not in buckets.SIZES:
        raise InputError(f"--sizes {sizes}: expected one of {', '.join(buckets.SIZES)}")
    if cross_check is not None and cross_check not in coco.available_backends():
        raise InputError(f"--cross-check {cross_check}: not installed or unknown (installed: "
                         f"{', '.join(coco.available_backends())})")
    check_device(device)
    check_image_memory(imgsz, batch)  # a letterboxed batch, before any model is loaded
    if not models:
        raise InputError("compare needs at least one model")
    if split in NOT_SPLITS:
        raise InputError(f"--split {split}: '{split}' is a data YAML key, not a split (e.g. val, test, train)")
    arms = parse_arms([str(m) for m in models])
    versus = versus or {}
    names = [arm.name for arm in arms]
    for a, r in versus.items():
        unknown = next((n for n in (a, r) if n not in names), None)
        if unknown:
            raise InputError(f"--versus {a}={r}: {unknown} is not an arm of this comparison ({', '.join(names)})")
        if a == r:
            raise InputError(f"--versus {a}={r}: an arm against itself")
    paired_specs = paired.parse(paired_with or [], names, {a.name: len(a.sources) for a in arms})
    images, names = coco.load_data_yaml(data, split)
    sources = [s for a in arms for s in a.sources]  # every model and predictions file checked first
    earlier = [] if out is None else earlier_outputs(Path(out), data, sources)
    saved = {s: predictions.read(s, images, len(names), ids_by_position)
             for s in sources if predictions.is_predictions(s)}
    exported = {s: load_export(s, names, map_classes_by_index, imgsz, batch, device, nms_free, slice_size)
                for s in sources if s not in saved and export_format(s)}
    yolos = {s: exported[s].yolo if s in exported else load_model(s, names, map_classes_by_index)
             for s in sources if s not in saved}
    stride = max([max_stride(y) for s, y in yolos.items() if s not in exported]
                 + [e.stride for e in exported.values()], default=1)
    if imgsz % stride:
        lo, hi = imgsz // stride * stride, math.ceil(imgsz / stride) * stride
        raise InputError(f"--imgsz {imgsz}: not a multiple of the models' largest stride {stride} "
                         f"(use {hi}{f' or {lo}' if lo else ''})")
    if slice_size and not has_sahi():
        raise InputError("--slice needs sahi: pip install 'yolo-incep[eval]' (or pip install sahi)")
    out = None if out is None else writable_folder(Path(out))
    for f in earlier:
        f.unlink(missing_ok=True)
    gt = coco.build_gt(images, names)
    report = CompareReport(
        data=str(data), split=split, imgsz=imgsz, device=device_name(device), conf=conf, iou=iou, max_det=max_det,
        nms_free=nms_free, sizes=sizes,
        images=len(gt["images"]), classes=names, instances=sum(1 for a in gt["annotations"] if not a["iscrowd"]),
        ignored_instances=sum(a["iscrowd"] for a in gt["annotations"]),
        ignored_regions=sum(len(im["ignored_regions"]) for im in gt["images"]))
    if out is not None:
        write_json(out / "gt.json", gt)
    counts = bootstrap.resample_counts(len(images), resamples, seed)
    scores: dict[str, dict] = {}  # row name -> metric -> value on each resample
    n_rows = sum(len(a.sources) * (2 if slice_size and a.sources[0] not in saved else 1) for a in arms)
    progress = Progress(n_rows, enabled=verbose)
    for arm in arms:
        for row_name, source in zip(arm.row_names(), arm.sources):
            predict_s = fps = None  # nothing is predicted for saved detections
            export = exported.get(source)
            if source in saved:
                runs, lat, (params, gflops), slices = _saved_rows(
                    saved[source], row_name, arm.name, verbose,
                    dict(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, nms_free=nms_free))
            else:
                yolo = yolos[source]
                params, gflops = (None, None) if export else model_cost(yolo.model, imgsz)  # exports do not say
                what = f"{export.format} {export.precision} export" if export else f"{params:,} params, {gflops} GFLOPs"
                _log(verbose, f"{row_name}: {what}; predicting {len(images)} images")
                t = time.perf_counter()
                with progress.phase(row_name, "predicting", len(images), "frame") as step:
                    bar = {"progress": step} if progress.enabled else {}
                    runs = {row_name: predict(yolo, images, imgsz, device, batch, conf, iou, max_det,
                                              nms=False if nms_free else None, **bar)}
                elapsed = time.perf_counter() - t
                predict_s, fps = round(elapsed, 3), round(len(images) / elapsed, 3)
                lat = {row_name: export.latency_ms(latency_runs) if export else  # in the export's own runtime
                       latency_ms(yolo.model, imgsz, device, reps=latency_runs)}
                slices = {row_name: 0}
                if slice_size:
                    _log(verbose, f"{row_name}: sliced inference, {slice_size}px slices")
                    name = f"{row_name}+slice{slice_size}"
                    runs[name], lat[name] = predict_sliced(yolo, images, device, conf, slice_size, slice_overlap,
                                                           nms=False if nms_free else None)
                    slices[name] = slice_size
            for name, dets in runs.items():
                kept = coco.drop_ignored(dets, gt)
                with progress.phase(name, "evaluating", len(images), "frame") as step:
                    e = coco.evaluate(gt, kept, sizes, progress=step)
                metrics = coco.metrics(e)
                if cross_check:
                    metrics["cross_check"] = _cross_check(gt, kept, e, cross_check, name)
                with progress.phase(name, "resampling", resamples, "resample") as step:
                    scores[name] = bootstrap.Matching.of(e).scores(counts, progress=step)
                sliced = bool(slices[name])
                arm_name = arm.name if not sliced or predictions.SLICED_NAME.search(arm.name) else \
                    f"{arm.name}+slice{slices[name]}"
                row = ModelRow(name=name, source=source, arm=arm_name,
                               sliced=sliced, params=params, gflops=gflops, latency_ms=lat[name],
                               detections=len(kept), ignored_detections=len(dets) - len(kept),
                               metrics=metrics, predict_s=None if sliced else predict_s,
                               predict_fps=None if sliced else fps,
                               analysis=Analysis.of(e, gt, kept),
                               export=export.info() if export else None)
                report.models.append(row)
                progress.row_done()
                _log(verbose, f"{name}: AP_small@500 {_fmt(row.flat.get('AP_small@500'))}"
                              + ("" if row.predict_fps is None else f", {row.predict_fps:.2f} frames/s predicted"))
                if out is not None:  # what was computed is on disk even if a later model fails
                    write_json(out / f"predictions_{name}.json", kept)
                    write_report(report, out)
    add_deltas(report, scores, versus, seed)
    report.contrasts += paired.contrasts(report, scores, paired_specs, seed)
    report.bootstrap = {"resamples": resamples, "seed": seed, "images": len(images), "confidence": 0.95,
                        "method": "paired bootstrap over images (the same resampled images for every model), "
                                  "percentile interval; per-image COCO matching re-accumulated per resample; "
                                  "arms of several seeds also resample their seeds (two-stage, deviations scaled "
                                  "by sqrt(k/(k-1)))"}
    report.complete = True
    if out is not None:
        write_report(report, out)
        _log(verbose, f"wrote {out / 'report.json'}")
    return report


def _cross_check(gt: dict, kept: list[dict], e, backend: str, name: str) -> dict:
    """The library's evaluation of one row beside compare's own: the largest difference of their accumulated
    precision and recall arrays (any above 1e-9 is said loudly: pycocotools must agree to the last bit)."""
    diff = coco.cross_check(gt, kept, e, backend)
    if diff > 1e-9:
        _log(True, f"WARNING {name}: {backend} differs from compare's evaluation by up to {diff:.3g}")
    return {"backend": backend, "max_abs_diff": diff}


def _saved_rows(saved: predictions.Predictions, row_name: str, arm_name: str, verbose: bool, settings: dict):
    """What a saved predictions file gives a report row: (runs, latency, (params, GFLOPs), slices).

    Its cost is the one the file records of its model (None where it says nothing). A sliced file (info 'slice',
    or an arm named '<arm>+slice<size>' as compare names sliced rows) is a sliced row; the settings it was made with
    are compared with this run's, and a difference is said, since AP depends on them.
    """
    info = saved.info
    named = predictions.SLICED_NAME.search(arm_name)
    size = saved.slice or (int(named.group(1)) if named else 0)
    name = row_name if not size or named else f"{row_name}+slice{size}"
    differ = {k: (info[k], v) for k, v in settings.items() if k in info and info[k] != v and not size}
    _log(verbose, f"{name}: {len(saved.detections)} saved detections from {saved.source}"
                  + "".join(f"; made with {k} {a}, this comparison uses {b}" for k, (a, b) in differ.items()))
    return ({name: saved.detections}, {name: info.get("latency_ms")}, (info.get("params"), info.get("gflops")),
            {name: size})


def add_deltas(report: CompareReport, scores: dict[str, dict], versus: dict[str, str] | None = None,
               seed: int = bootstrap.SEED) -> None:
    """Arms (mean and spread over seeds), every delta to the baseline arm of the same kind (whole or sliced), and
    the contrasts of `versus` {arm: reference}, for the whole and the sliced rows alike. An arm of several seeds
    enters every interval with its seeds resampled too (bootstrap.arm_scores; the draws seeded by `seed`)."""
    by_arm: dict[str, list[ModelRow]] = {}
    for m in report.models:
        by_arm.setdefault(m.arm, []).append(m)
    report.arms = [arm_summary(name, rows) for name, rows in by_arm.items()]
    arm_scores = {a.name: bootstrap.arm_scores([scores[r] for r in a.rows], (seed, i))
                  for i, a in enumerate(report.arms)}
    baselines = {}
    for a in report.arms:
        baselines.setdefault(a.sliced, a)
    for a in report.arms:
        base = baselines[a.sliced]
        if a is base:
            continue
        a.delta = _deltas(a.mean, base.mean, arm_scores[a.name], arm_scores[base.name])
        for m in by_arm[a.name]:
            m.delta = _deltas(m.flat, base.mean, scores[m.name], arm_scores[base.name])
    arms = {a.name: a for a in report.arms}
    for name, ref in (versus or {}).items():
        for a in [a for a in report.arms if a.name == name or a.name.startswith(name + "+slice")]:
            r = arms.get(ref + a.name.removeprefix(name))  # the sliced rows against the reference's sliced rows
            if r is not None:
                delta = _deltas(a.mean, r.mean, arm_scores[a.name], arm_scores[r.name])
                report.contrasts.append(Contrast(a.name, r.name, delta))


def _deltas(values: dict, base: dict, scores: dict, base_scores: dict) -> dict:
    out = {}
    for k in bootstrap.DELTA_KEYS:
        if k not in values:  # a bucket family left out by --sizes
            continue
        d = None if values[k] is None or base[k] is None else values[k] - base[k]
        out[k] = bootstrap.paired_delta(d, base_scores[k], scores[k])
    return out


def parse_versus(pairs: list[str]) -> dict[str, str]:
    """'ARM=REF' arguments -> {arm: reference}."""
    out = {}
    for pair in pairs:
        arm, sep, ref = pair.partition("=")
        if not (sep and arm and ref):
            raise InputError(f"--versus {pair}: expected ARM=REF, two arm names of this comparison")
        out[arm] = ref
    return out


def check_settings(**values) -> None:
    """Ranges of the numeric settings, named as their command-line flags."""
    rules = {"imgsz": (lambda v: v >= 32, "at least 32"), "batch": (lambda v: v >= 1, "at least 1"),
             "max_det": (lambda v: v >= 1, "at least 1"), "slice_size": (lambda v: v == 0 or v >= 32, "0 or >= 32"),
             "latency_runs": (lambda v: v >= 1, "at least 1"), "conf": (lambda v: 0 <= v < 1, "in [0, 1)"),
             "iou": (lambda v: 0 < v <= 1, "in (0, 1]"), "slice_overlap": (lambda v: 0 <= v < 1, "in [0, 1)"),
             "resamples": (lambda v: v >= 1, "at least 1")}
    flags = {"slice_size": "--slice"}
    for name, v in values.items():
        ok, allowed = rules[name]
        if not ok(v):
            raise InputError(f"{flags.get(name, '--' + name.replace('_', '-'))} {v}: out of range (must be {allowed})")


def earlier_outputs(out: Path, data: str | Path, sources: list[str]) -> list[Path]:
    """The files of an earlier run in `out` (OUTPUTS), which a new run removes; an InputError when `out` lies inside
    the dataset's folders or a model source is one of those files."""
    refuse_inside_dataset(out, "--out", read_data_yaml(data))
    found = {f for pattern in OUTPUTS for f in out.glob(pattern) if f.is_file()} if out.is_dir() else set()
    earlier = sorted(found, key=lambda f: (f.name != "report.json", f.name))  # the report first: it claims the run
    for s in sources:
        if Path(s).is_file() and any(Path(s).resolve() == f.resolve() for f in earlier):
            raise InputError(f"--out {out}: holds the model source {s}, which this run would remove and replace (an "
                             f"earlier compare's output): copy it elsewhere or choose another --out")
    return earlier


def writable_folder(out: Path) -> Path:
    """`out`, created if needed, after proving a file can be written there."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"--out {out}: not a writable folder ({e.strerror or e})") from e
    return out


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(f"compare: {message}", file=sys.stderr, flush=True)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `yolo-incep compare`."""
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="checkpoint (.pt), model YAML name, exported model (best.onnx, best_openvino_model, "
                             "best_ncnn_model, best.mnn, best.torchscript, ...: run in its own runtime) or saved "
                             "predictions (COCO results .json / .gz / .xz on this split's images), optionally "
                             "NAME=MODEL; NAME=a.pt,b.pt is one arm trained with several seeds; the first is the "
                             "baseline")
    parser.add_argument("--data", required=True, help="Ultralytics data YAML (YOLO labels, optional ignore/ sidecars)")
    parser.add_argument("--split", default="val", help="split of the data YAML to evaluate (default: val)")
    parser.add_argument("--imgsz", type=int, default=640,
                        help="inference size, a multiple of the largest stride (default: 640)")
    parser.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    parser.add_argument("--device", default="", help="cpu, 0, cuda:0, ... (default: the first GPU, else cpu)")
    parser.add_argument("--batch", type=int, default=8, help="inference batch size (default: 8)")
    parser.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default: 0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default: 0.7, as Ultralytics val)")
    parser.add_argument("--max-det", type=int, default=500, help="detections kept per image (default: 500)")
    parser.add_argument("--slice", type=int, default=0, metavar="SIZE",
                        help="also run SAHI sliced inference with SIZE px slices, as extra rows (default: off)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="slice overlap ratio (default: 0.2)")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forward passes per model (default: 10)")
    parser.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES,
                        help=f"bootstrap resamples for the delta intervals (default: {bootstrap.RESAMPLES})")
    parser.add_argument("--seed", type=int, default=bootstrap.SEED, help="bootstrap seed (default: 0)")
    parser.add_argument("--map-classes-by-index", action="store_true",
                        help="score a checkpoint whose class names differ from the dataset's by index (class i as "
                             "the dataset's class i); without it a difference is refused")
    parser.add_argument("--nms-free", action="store_true",
                        help="end-to-end models (YOLO26) predict with their NMS-free one-to-one head, as `yolo val "
                             "nms=False` (default: their one-to-many head and NMS, as Ultralytics' default)")
    parser.add_argument("--versus", action="append", default=[], metavar="ARM=REF",
                        help="also the paired difference of arm ARM to arm REF (repeatable; e.g. p2 models)")
    parser.add_argument("--ids-by-position", action="store_true",
                        help="a plain COCO results file without compare's gt.json beside it: its image_id i is the "
                             "split's i-th image, sorted by path (without this flag such a file is refused: nothing "
                             "in it says which images it is for)")
    parser.add_argument("--sizes", choices=buckets.SIZES, default=buckets.SIZES[0],
                        help="size buckets: COCO's (small < 32 px, medium, large), AI-TOD's (very tiny < 8 px, tiny "
                             "8-16, small 16-32, medium >= 32) or both (default: both)")
    parser.add_argument("--cross-check", choices=("pycocotools", "faster_coco_eval"), default=None,
                        help="also evaluate every row with this library and record the largest difference to "
                             "compare's own evaluation (default: none; compare follows pycocotools' rules)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no log lines on stderr")
    parser.add_argument("--paired", action="append", default=[], metavar="ARM=REF[,ARM2=REF2]",
                        help="ARM's sources are REF's checkpoints in another form (e.g. their INT8 exports), in the "
                             "same order: ARM - REF with their seeds resampled together; with ARM2=REF2, the "
                             "difference (ARM - REF) - (ARM2 - REF2), e.g. Inception's INT8 drop minus stock's "
                             "(repeatable)")


def run(args: argparse.Namespace) -> int:
    """Compare, print the table, write the report."""
    with folder_lock(Path(args.out), flag="--out"):  # one writer per --out: two runs would mix models in one report
        report = compare_models(args.models, args.data, split=args.split, imgsz=args.imgsz, out=args.out,
                                device=args.device, batch=args.batch, conf=args.conf, iou=args.iou,
                                max_det=args.max_det, slice_size=args.slice, slice_overlap=args.slice_overlap,
                                latency_runs=args.latency_runs, resamples=args.resamples, seed=args.seed,
                                versus=parse_versus(args.versus), map_classes_by_index=args.map_classes_by_index,
                                nms_free=args.nms_free, ids_by_position=args.ids_by_position, sizes=args.sizes,
                                cross_check=args.cross_check, verbose=not args.quiet, paired_with=args.paired)
    print(report)
    return 0
