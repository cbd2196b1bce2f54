"""INT8 and small objects: Ultralytics' two CPU INT8 paths on the CPU protocol's checkpoints, scored by `compare`.

    python scripts/bench_int8.py export --work W --calib DATA.yaml --imgsz 1536 NAME=CKPT ...     # resumable
    python scripts/bench_int8.py compare --work W --data DATA.yaml --imgsz 1536 \\
        --pair yolov8n=yolov8n-s0,yolov8n-s1:yolov8n-incep=yolov8n-incep-s0,yolov8n-incep-s1 [--fp32 NAME=PREDS ...]
    python scripts/bench_int8.py summary --work W --out docs/results/deploy_int8_cpu.json

`export` runs `yolo export` as a user does, `format=openvino quantize=8` (NNCF) and `format=onnx quantize=8` (ONNX
Runtime static), calibrated on `--calib`'s `--calib-split` at `--imgsz`, and `format=openvino` (FP32), for each
checkpoint (copied to W/NAME/best.pt, the exporter writes beside it). `compare` scores one stock / Inception pair:
FP32 (the checkpoint, or its kept predictions given by --fp32) and the exports of every seed, each arm's drop with
its seeds paired (`--paired`), and the difference of the drops, Inception minus stock. `summary` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from yolo_incep.files import atomic_write_bytes

# arm suffix -> (format, quantize, what the exporter writes); ov32: OpenVINO's FP32 IR as Ultralytics runs it (bf16
# arithmetic on CPUs with AVX512-BF16 or AMX), the reference that separates that precision from INT8's
PATHS = {"ov8": ("openvino", 8, "best_int8_openvino_model"), "ort8": ("onnx", 8, "best_int8.onnx"),
         "ov32": ("openvino", None, "best_openvino_model")}
KEYS = ("AP_small@500", "AP@500")


def run_export(args) -> None:
    from ultralytics import YOLO

    for spec in args.checkpoints:
        name, _, ckpt = spec.partition("=")
        folder = args.work / name
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / "best.pt"
        if not local.is_file():
            shutil.copy(ckpt, local)
        for path, (fmt, quantize, produced) in PATHS.items():
            if (folder / produced).exists():
                continue
            print(f"{name}: {path}", flush=True)
            calib = dict(data=args.calib, split=args.calib_split) if quantize == 8 else {}
            YOLO(str(local)).export(format=fmt, quantize=quantize, imgsz=args.imgsz, batch=1, **calib)


def run_compare(args) -> None:
    """One pair per call: arms s-fp32, s-ov8, s-ort8, s-ov32 and the same with i- (s: stock, i: Inception)."""
    fp32 = dict(s.split("=", 1) for s in args.fp32)
    (stock, stock_runs), (incep, incep_runs) = (part.split("=", 1) for part in args.pair.split(":"))
    arms, paired = [], []
    for tag, runs in (("s", stock_runs.split(",")), ("i", incep_runs.split(","))):
        arms.append(f"{tag}-fp32=" + ",".join(fp32.get(r, str(args.work / r / "best.pt")) for r in runs))
        for path, (_, _, produced) in PATHS.items():
            arms.append(f"{tag}-{path}=" + ",".join(str(args.work / r / produced) for r in runs))
            paired.append(f"{tag}-{path}={tag}-fp32")
        paired.append(f"{tag}-ov8={tag}-ov32")  # OpenVINO's INT8 against its own FP32 IR, both in its precision
    for path in PATHS:
        paired.append(f"i-{path}=i-fp32,s-{path}=s-fp32")
    paired.append("i-ov8=i-ov32,s-ov8=s-ov32")
    out = args.work / "reports" / f"{stock}-vs-{incep}"
    cmd = ["yolo-incep", "compare", *arms, "--data", args.data, "--imgsz", str(args.imgsz), "--batch", "1",
           "--out", str(out), *[a for p in paired for a in ("--paired", p)]]
    (args.work / "reports").mkdir(parents=True, exist_ok=True)
    (args.work / "reports" / f"{stock}-vs-{incep}.command.txt").write_text(" ".join(cmd) + "\n")
    subprocess.run([sys.executable, "-m", "yolo_incep.cli", *cmd[1:]], check=True)  # this interpreter's yolo-incep


def run_summary(args) -> None:
    """Per pair, one line of JSON: each arm's mean of KEYS and each contrast as [value, lo, hi] (latency: the
    deployment table's, timed interleaved; compare's own, per model in turn on a shared machine, is not kept)."""
    lines = []
    for report in sorted((args.work / "reports").glob("*/report.json")):
        r = json.loads(report.read_text())
        if not r["complete"]:  # a comparison still running, or one that failed
            continue
        entry = {"pair": report.parent.name, "seeds": {a["name"]: a["seeds"] for a in r["arms"]},
                 "mean": {k: {a["name"]: a["mean"][k] for a in r["arms"]} for k in KEYS},
                 "contrasts": {f"{c['arm']} vs {c['reference']}": {k: [c["delta"][k]["value"],
                                                                      *c["delta"][k]["ci95"]] for k in KEYS}
                               for c in r["contrasts"]},
                 "command": (report.parent.parent / f"{report.parent.name}.command.txt").read_text().strip()}
        lines.append(json.dumps(entry))
    text = "[\n" + ",\n".join(lines) + "\n]\n"
    print(text)
    if args.out:
        atomic_write_bytes(args.out, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["export", "compare", "summary"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("checkpoints", nargs="*", metavar="NAME=CKPT", help="export: the checkpoints")
    parser.add_argument("--calib", help="export: calibration data YAML")
    parser.add_argument("--calib-split", default="train")
    parser.add_argument("--imgsz", type=int, default=1536)
    parser.add_argument("--data", help="compare: the data YAML scored")
    parser.add_argument("--pair", help="compare: STOCK=RUN[,RUN]:INCEP=RUN[,RUN] (RUN: a NAME given to export)")
    parser.add_argument("--fp32", nargs="*", default=[], metavar="RUN=PREDICTIONS",
                        help="compare: a run's FP32 kept predictions instead of running its checkpoint")
    parser.add_argument("--out", type=Path, help="summary: the JSON to write")
    args = parser.parse_intermixed_args(argv)  # the checkpoints may follow the options
    {"export": run_export, "compare": run_compare, "summary": run_summary}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
