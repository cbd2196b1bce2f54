"""`yolo-incep compare`: several models on one dataset split, COCO AP/AP_small side by side with their cost."""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..data.common import atomic_write_bytes
from . import coco

TABLE_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR")


def split_model_arg(arg: str) -> tuple[str | None, str]:
    """'NAME=SOURCE' -> (NAME, SOURCE); a plain source (or an existing path holding '=') has no name."""
    name, sep, source = arg.partition("=")
    if not sep or Path(arg).exists() or not name:
        return None, arg
    return name, source


def default_name(source: str) -> str:
    """A report name for a model: the YAML/checkpoint stem, or the run folder of an Ultralytics '.../weights/*.pt'."""
    p = Path(source)
    if p.parent.name == "weights" and p.parent.parent.name:
        return p.parent.parent.name + ("" if p.stem == "best" else f"-{p.stem}")
    return p.stem


def unique_names(names: list[str]) -> list[str]:
    """File-safe names, '-2', '-3', ... appended to repeats."""
    out: list[str] = []
    for n in names:
        base = re.sub(r"[^A-Za-z0-9._+-]", "_", n) or "model"
        name, k = base, 1
        while name in out:
            k += 1
            name = f"{base}-{k}"
        out.append(name)
    return out


def load_model(source: str, names: list[str]):
    """A detection YOLO for `source`: a YAML (built untrained for these classes, seeded) or a checkpoint."""
    import torch
    from ultralytics import YOLO

    if Path(source).suffix in {".yaml", ".yml"}:
        from ultralytics.nn.tasks import DetectionModel, yaml_model_load

        try:
            cfg = yaml_model_load(source)
        except FileNotFoundError as e:
            raise InputError(f"model {source}: no such model YAML ({e})") from e
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # an untrained model still gives the same report twice
            yolo = YOLO(source, task="detect")
            if yolo.model.yaml.get("nc") != len(names):
                yolo.model = DetectionModel(cfg, nc=len(names), verbose=False)
        yolo.model.names = dict(enumerate(names))
        return yolo
    if not Path(source).is_file():  # checked here: Ultralytics would try to download unknown '*.pt' names
        raise InputError(f"model {source}: no such checkpoint (give a .pt path or a model YAML name)")
    yolo = YOLO(source)
    if yolo.task != "detect":
        raise InputError(f"model {source}: a {yolo.task!r} model, compare needs a 'detect' model")
    if len(yolo.names) != len(names):
        raise InputError(f"model {source}: {len(yolo.names)} classes, but the dataset names {len(names)}")
    return yolo


def model_cost(model, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs at imgsz x imgsz) of the unfused model, as Ultralytics' model.info() reports them."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    return get_num_params(model), round(float(get_flops(model, imgsz)), 3)


def latency_ms(model, imgsz: int, device: str, warmup: int = 3, runs: int = 10) -> float:
    """Median ms of one fused forward pass of a 1 x 3 x imgsz x imgsz batch on `device`, after warm-up."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    m = copy.deepcopy(model).to(dev).eval()
    m = m.fuse(verbose=False) if hasattr(m, "fuse") else m
    x = torch.rand(1, 3, imgsz, imgsz, device=dev)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = time.perf_counter()
            m(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def _result(image_id: int, xyxy, score: float, cls: int) -> dict:
    """One COCO results entry; rounding happens here so the evaluated list is exactly the written one."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    bbox = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
    return {"image_id": image_id, "category_id": int(cls) + 1, "bbox": bbox, "score": round(float(score), 5)}


def predict(yolo, images: list[Path], imgsz: int, device: str, batch: int, conf: float, iou: float,
            max_det: int) -> list[dict]:
    """COCO results of whole-image inference; image ids are 1-based positions in `images`."""
    ids = {str(p.absolute()): i for i, p in enumerate(images, 1)}  # Ultralytics sorts the list, keys results by this
    out = []
    for r in yolo.predict([str(p) for p in images], stream=True, imgsz=imgsz, device=device, batch=batch,
                          conf=conf, iou=iou, max_det=max_det, verbose=False, save=False):
        b = r.boxes
        out += [_result(ids[r.path], *row) for row in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())]
    return out


def predict_sliced(yolo, images: list[Path], imgsz: int, device: str, conf: float, size: int,
                   overlap: float) -> tuple[list[dict], float]:
    """COCO results of SAHI sliced inference (plus the full image), and the median ms per image end to end."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    dm = UltralyticsDetectionModel(model=yolo, confidence_threshold=conf, device=device or None, image_size=imgsz)
    out, times = [], []
    for image_id, p in enumerate(images, 1):
        t = time.perf_counter()
        pred = get_sliced_prediction(str(p), dm, slice_height=size, slice_width=size, overlap_height_ratio=overlap,
                                     overlap_width_ratio=overlap, verbose=0)
        times.append((time.perf_counter() - t) * 1e3)
        for o in pred.object_prediction_list:
            out.append(_result(image_id, o.bbox.to_xyxy(), o.score.value, o.category.id))
    return out, round(statistics.median(times), 3)


def compare_models(models: list[str], data: str | Path, split: str = "val", imgsz: int = 640,
                   out: str | Path | None = None, device: str = "cpu", batch: int = 8, conf: float = 0.001,
                   iou: float = 0.7, max_det: int = 500, slice_size: int = 0, slice_overlap: float = 0.2,
                   latency_runs: int = 10, verbose: bool = True) -> dict:
    """Evaluate every model on one split and return the report dict (written to `out` when given).

    `models`: checkpoint paths or model YAML names, optionally 'NAME=SOURCE'; the first one is the baseline.
    `slice_size` > 0 adds one row per model for SAHI sliced inference with square slices of that size.
    """
    if not models:
        raise InputError("compare needs at least one model")
    images, names = coco.load_data_yaml(data, split)
    gt = coco.build_gt(images, names)
    pairs = [split_model_arg(str(m)) for m in models]
    labels = unique_names([n or default_name(s) for n, s in pairs])
    report: dict = {
        "data": str(data), "split": split, "imgsz": imgsz, "device": _device_name(device), "conf": conf, "iou": iou,
        "max_det": max_det, "images": len(gt["images"]), "classes": names,
        "instances": sum(1 for a in gt["annotations"] if not a["iscrowd"]),
        "ignored_instances": sum(a["iscrowd"] for a in gt["annotations"]),
        "ignored_regions": sum(len(im["ignored_regions"]) for im in gt["images"]),
        "latency": f"median ms of a fused forward pass, batch 1, {imgsz}x{imgsz}, after warm-up "
                   "(sliced rows: median ms per image end to end)",
        "models": [],
    }
    yolos = [load_model(s, names) for _, s in pairs]  # every model is checked before the first one runs
    predictions: dict[str, list[dict]] = {}
    for label, (_, source), yolo in zip(labels, pairs, yolos):
        params, gflops = model_cost(yolo.model, imgsz)
        _log(verbose, f"{label}: {params:,} params, {gflops} GFLOPs; predicting {len(images)} images")
        t = time.perf_counter()
        runs = {label: predict(yolo, images, imgsz, device, batch, conf, iou, max_det)}
        predict_s = time.perf_counter() - t
        lat = {label: latency_ms(yolo.model, imgsz, device, runs=latency_runs)}
        if slice_size:
            _log(verbose, f"{label}: sliced inference, {slice_size}px slices")
            sliced = f"{label}+slice{slice_size}"
            runs[sliced], lat[sliced] = predict_sliced(yolo, images, imgsz, device, conf, slice_size, slice_overlap)
        for row, dets in runs.items():
            kept = coco.drop_ignored(dets, gt)
            predictions[row] = kept
            entry = {"name": row, "source": source, "sliced": row != label, "params": params, "gflops": gflops,
                     "latency_ms": lat[row], "detections": len(kept), "ignored_detections": len(dets) - len(kept)}
            if row == label:
                entry["predict_s"] = round(predict_s, 3)
            entry |= coco.evaluate(gt, kept)
            report["models"].append(entry)
            _log(verbose, f"{row}: AP_small@500 {_fmt(entry['maxDets']['500']['AP_small'])}")
            if entry["backend_max_abs_diff"] > 1e-4:  # both evaluators must agree; say so loudly when they do not
                diff = entry["backend_max_abs_diff"]
                _log(True, f"WARNING {row}: COCO backends {entry['backends']} differ by up to {diff}")
    if out is not None:
        write_outputs(report, gt, predictions, Path(out))
        _log(verbose, f"wrote {Path(out) / 'report.json'}")
    return report


def _device_name(device: str) -> str:
    """The device as torch names it, with the GPU model or the CPU thread count."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"{dev} ({torch.get_num_threads()} threads)"


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(f"compare: {message}", file=sys.stderr, flush=True)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table_rows(report: dict) -> list[tuple[str, list]]:
    """(row label, one value per model) in table order: cost, AP/AR at each maxDets, per-class AP_small."""
    ms = report["models"]
    rows: list[tuple[str, list]] = [("params (M)", [m["params"] / 1e6 for m in ms]),
                                    ("GFLOPs", [m["gflops"] for m in ms]),
                                    ("latency ms/img", [m["latency_ms"] for m in ms])]
    for md in coco.MAX_DETS:
        rows += [(f"{k}@{md}", [m["maxDets"][str(md)][k] for m in ms]) for k in TABLE_METRICS]
    rows += [(f"AP_small[{c}]@{coco.MAX_DETS[-1]}", [m["per_class_AP_small"][c] for m in ms])
             for c in report["classes"]]
    return rows


def format_table(report: dict) -> str:
    """Side-by-side table, one column per model; deltas against the first model (relative for cost, absolute for AP)."""
    names = [m["name"] for m in report["models"]]
    cells = []
    for label, values in table_rows(report):
        cost = not label.startswith(("AP", "AR"))
        cells.append([label] + [_cell(v, values[0], cost, j == 0) for j, v in enumerate(values)])
    header = ["", *names]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *cells]]
    title = (f"{report['data']} [{report['split']}]: {report['images']} images, {report['instances']} objects "
             f"({report['ignored_instances']} ignored), imgsz {report['imgsz']}, {report['device']}")
    return "\n".join([title, *lines])


def _cell(v: float | None, base: float | None, cost: bool, baseline: bool) -> str:
    """A value with its delta to the baseline: relative for cost, absolute for AP/AR."""
    if v is None:
        return "-"
    text = f"{v:.2f}" if cost else f"{v:.3f}"
    if baseline or base is None:
        return text
    if cost:
        return f"{text} ({(v / base - 1) * 100:+.1f}%)" if base else text
    return f"{text} ({v - base:+.3f})"


def csv_text(report: dict) -> str:
    """One row per model: cost, then every metric under its flat key ('AP_small@500', 'AP_small[car]')."""
    rows = [{"name": m["name"], "source": m["source"], "sliced": m["sliced"], "params": m["params"],
             "gflops": m["gflops"], "latency_ms": m["latency_ms"]} | coco.flatten(m) for m in report["models"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot_png(report: dict) -> bytes:
    """Grouped bars of AP_small/medium/large per model, one panel per maxDets."""
    from matplotlib.figure import Figure  # no pyplot: the global backend stays untouched

    ms = report["models"]
    fig = Figure(figsize=(4 + 2.5 * len(ms), 4), layout="constrained")
    axes = fig.subplots(1, len(coco.MAX_DETS), sharey=True, squeeze=False)[0]
    width = 0.8 / len(ms)
    for ax, md in zip(axes, coco.MAX_DETS):
        for j, m in enumerate(ms):
            vals = [m["maxDets"][str(md)][f"AP_{s}"] or 0.0 for s in coco.AREAS[1:]]
            bars = ax.bar([i + (j - (len(ms) - 1) / 2) * width for i in range(3)], vals, width, label=m["name"])
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_xticks(range(3), [s for s in coco.AREAS[1:]])
        ax.set_title(f"AP by object size, maxDets {md}")
        ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))  # AP noise of 1e-6 must not fill the axis like a result
    axes[0].set_ylabel("AP@[.5:.95]")
    axes[-1].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def write_outputs(report: dict, gt: dict, predictions: dict[str, list[dict]], out: Path) -> None:
    """report.json/.csv, gt.json, predictions_<name>.json and ap_by_size.png, each written atomically."""
    atomic_write_bytes(out / "gt.json", json.dumps(gt))
    for name, dets in predictions.items():
        atomic_write_bytes(out / f"predictions_{name}.json", json.dumps(dets))
    atomic_write_bytes(out / "report.csv", csv_text(report))
    atomic_write_bytes(out / "ap_by_size.png", plot_png(report))
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `yolo-incep compare`."""
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="checkpoint (.pt) or model YAML name, optionally NAME=MODEL; the first is the baseline")
    parser.add_argument("--data", required=True, help="Ultralytics data YAML (YOLO labels, optional ignore/ sidecars)")
    parser.add_argument("--split", default="val", help="split of the data YAML to evaluate (default: val)")
    parser.add_argument("--imgsz", type=int, default=640, help="inference size (default: 640)")
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


def run(args: argparse.Namespace) -> int:
    """Compare, print the table, write the report."""
    for flag, value, ok in (("--imgsz", args.imgsz, args.imgsz >= 32), ("--batch", args.batch, args.batch >= 1),
                            ("--max-det", args.max_det, args.max_det >= 1), ("--slice", args.slice, args.slice >= 0),
                            ("--latency-runs", args.latency_runs, args.latency_runs >= 1),
                            ("--conf", args.conf, 0 <= args.conf < 1), ("--iou", args.iou, 0 < args.iou <= 1),
                            ("--slice-overlap", args.slice_overlap, 0 <= args.slice_overlap < 1)):
        if not ok:
            raise InputError(f"{flag} {value}: out of range")
    report = compare_models(args.models, args.data, split=args.split, imgsz=args.imgsz, out=args.out,
                            device=args.device, batch=args.batch, conf=args.conf, iou=args.iou,
                            max_det=args.max_det, slice_size=args.slice, slice_overlap=args.slice_overlap,
                            latency_runs=args.latency_runs)
    print(format_table(report))
    return 0
