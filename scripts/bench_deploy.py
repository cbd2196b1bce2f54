"""The deployment table: every CPU export format Ultralytics has, for our models and their stock counterparts.

Per format and model: does `yolo export` succeed, does `YOLO(export)` load it (Ultralytics' AutoBackend), how far
its output is from the PyTorch FP32 model's, and its latency over the stock counterpart's in that runtime (batch 1,
fused, interleaved in one run, one runtime per run: a runtime timed in the same loop as another slows both).
Weights are YAML-built (seed 0), made to produce outputs that can differ: BatchNorm statistics taken from one batch
of random images (a fresh network's activations otherwise fade through its depth to a near-constant output), layer
scales drawn from U(0.5, 1) (fresh ones are 1e-6: the Inception blocks would be the identity) and the class logits'
biases zeroed (Ultralytics' prior makes a fresh model's scores ~1e-5); nothing is downloaded.

    python scripts/bench_deploy.py export --work W                  # every format: exports, loads, parity
    python scripts/bench_deploy.py time --work W --variant onnx     # one runtime's latencies (exclusive CPU)
    python scripts/bench_deploy.py table --work W --out docs/results/deploy_cpu.csv

INT8 variants calibrate on `--calib` (a data YAML, its `--calib-split`, the first `--calib-images`): latency and
parity only; accuracy after INT8 is docs/deploy.md's measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from importlib.util import find_spec
from pathlib import Path

import torch

from yolo_incep.cost import build_model, emit_json, fused_forward, interleaved_medians
from yolo_incep.eval.models import CPU_RUNTIMES, package_version
from yolo_incep.errors import one_line
from yolo_incep.files import atomic_write_bytes

PAIRS = [("yolov8n.yaml", "yolov8n-incep.yaml"), ("yolov8n-p2.yaml", "yolov8n-incep-p2.yaml"),
         ("yolo26n.yaml", "yolo26n-incep.yaml"), ("yolo26n-p2.yaml", "yolo26n-incep-p2.yaml")]
# variant -> export arguments (Ultralytics 8.4.190 spells INT8 / FP16 `quantize=8` / `quantize=16`)
VARIANTS = {"torchscript": {"format": "torchscript"}, "onnx": {"format": "onnx"},
            "onnx-int8": {"format": "onnx", "quantize": 8}, "openvino": {"format": "openvino"},
            "openvino-fp16": {"format": "openvino", "quantize": 16}, "openvino-int8": {"format": "openvino",
                                                                                    "quantize": 8},
            "ncnn": {"format": "ncnn"}, "mnn": {"format": "mnn"}, "executorch": {"format": "executorch"},
            "litert": {"format": "litert"}, "paddle": {"format": "paddle"}}


def models() -> list[str]:
    return [m for pair in PAIRS for m in pair]


def checkpoint(name: str, work: Path) -> Path:
    """`work/ckpt/<stem>/<stem>.pt`: the YAML-built model (seed 0, 80 classes), BatchNorm statistics of 4 random
    images, layer scales in U(0.5, 1), class biases 0."""
    from yolo_incep.nn import MetaNeXtBlock

    stem = Path(name).stem
    path = work / "ckpt" / stem / f"{stem}.pt"
    if not path.is_file():
        model = build_model(name)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, MetaNeXtBlock) and m.gamma is not None:
                    m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.5)
            head = model.model[-1]
            for branch in [*head.cv3, *getattr(head, "one2one_cv3", [])]:
                branch[-1].bias.zero_()
            norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            momentum = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: the batch's own statistics
            model.train()(torch.rand(4, 3, 256, 256, generator=g))
            for m, v in zip(norms, momentum):
                m.momentum = v
        model.eval()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model, "train_args": {}}, path)
    return path


def reference(ckpt: Path):
    """The PyTorch FP32 model as the exporter prepares it (fused, eval; YOLO26's one-to-many head, as nms=None)."""
    from ultralytics import YOLO

    model = YOLO(str(ckpt)).model
    if hasattr(model, "end2end"):
        model.end2end = False
    return model.fuse(verbose=False).eval().float()


def export_one(name: str, variant: str, work: Path, imgsz: int, calib: dict) -> dict:
    """Export one model to one variant with Ultralytics' exporter, load it, and measure its output's distance to
    PyTorch's: {"exported", "export_s", "loaded", "max_abs_diff_boxes", "max_abs_diff_scores", "error"}."""
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend

    ckpt = checkpoint(name, work)
    folder = work / variant / ckpt.stem  # the exporter writes beside the checkpoint: one copy per variant
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / ckpt.name
    local.write_bytes(ckpt.read_bytes())
    args = dict(VARIANTS[variant], imgsz=imgsz, batch=1, verbose=False)
    if args.get("quantize") == 8:
        args |= calib
    row: dict = {"exported": False, "loaded": False}
    start = time.perf_counter()
    try:
        path = YOLO(str(local)).export(**args)
    except Exception as e:  # what the exporter says is the result for this cell
        return row | {"error": one_line(e), "trace": traceback.format_exc(limit=-3)[-1500:]}
    row |= {"exported": True, "export_s": round(time.perf_counter() - start, 1), "path": str(path)}
    try:
        backend = AutoBackend(str(path), device=torch.device("cpu"), verbose=False)
        x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
        got = backend(x)
        got = (got[0] if isinstance(got, (list, tuple)) else got).float()
    except Exception as e:
        return row | {"error": one_line(e), "trace": traceback.format_exc(limit=-3)[-1500:]}
    with torch.inference_mode():
        expected = reference(ckpt)(x)[0]
    row["loaded"] = True
    if got.shape != expected.shape:
        return row | {"error": f"output shape {tuple(got.shape)}, PyTorch's {tuple(expected.shape)}"}
    diff = (got - expected).abs()
    row |= {"max_abs_diff_boxes": _sig(diff[:, :4].max()), "max_abs_diff_scores": _sig(diff[:, 4:].max()),
            "max_abs_boxes": _sig(expected[:, :4].abs().max()), "mean_score": _sig(expected[:, 4:].mean())}
    if VARIANTS[variant]["format"] == "openvino":  # the precision OpenVINO chose (bf16 on AVX512-BF16 / AMX CPUs)
        import openvino as ov

        compiled = backend.ov_compiled_model
        row["runtime_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        f32 = ov.Core().compile_model(next(Path(path).glob("*.xml")), "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32})
        diff = (torch.from_numpy(f32(x.numpy())[0]) - expected).abs()
        row |= {"f32_max_abs_diff_boxes": _sig(diff[:, :4].max()), "f32_max_abs_diff_scores": _sig(diff[:, 4:].max())}
    return row


def _sig(v) -> float:
    """Three significant digits."""
    return float(f"{float(v):.3g}")


def run_export(args) -> None:
    calib = {"data": args.calib, "split": args.calib_split, "fraction": args.calib_images} if args.calib else {}
    for variant in args.variants:
        fmt = VARIANTS[variant]["format"]
        out = args.work / f"export_{variant}.json"
        if out.is_file() and not args.again:
            continue
        if find_spec(CPU_RUNTIMES[fmt][0]) is None:
            result = {"skipped": f"{CPU_RUNTIMES[fmt][1]} is not installed (pip install "
                                 f"'yolo-incep[{CPU_RUNTIMES[fmt][2]}]')"}
        elif VARIANTS[variant].get("quantize") == 8 and not calib:
            result = {"skipped": "INT8 needs --calib"}
        else:
            result = {m: export_one(m, variant, args.work, args.imgsz, calib) for m in models()}
            result = {"runtime": f"{CPU_RUNTIMES[fmt][1]} {package_version(CPU_RUNTIMES[fmt][1])}", "models": result}
        atomic_write_bytes(out, json.dumps(result, indent=1) + "\n")
        print(variant, json.dumps({m: {k: v for k, v in r.items() if k != "trace"}
                                   for m, r in result.get("models", {}).items()} or result), flush=True)


def run_time(args) -> None:
    """One runtime: every model's latency, interleaved; 'pytorch' is the fused PyTorch FP32 model."""
    torch.set_num_threads(args.threads)
    fns = {}
    x = torch.zeros(1, 3, args.imgsz, args.imgsz)
    if args.variant == "pytorch":
        for m in models():
            fns[m] = fused_forward(reference(checkpoint(m, args.work)), args.imgsz, torch.device("cpu"))
    else:
        from ultralytics.nn.autobackend import AutoBackend

        done = json.loads((args.work / f"export_{args.variant}.json").read_text()).get("models", {})
        for m, row in done.items():
            if row.get("loaded"):
                backend = AutoBackend(row["path"], device=torch.device("cpu"), verbose=False)
                _without_spinning(backend, row["path"], args.threads)
                fns[m] = (lambda b: lambda: b(x))(backend)
    medians = interleaved_medians(fns, args.reps)
    result = {"variant": args.variant, "reps": args.reps, "threads": args.threads, "imgsz": args.imgsz,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "load": os.getloadavg(), "median_ms": {m: round(v * 1e3, 2) for m, v in medians.items()},
              "ratio": {incep: round(medians[incep] / medians[stock], 3) for stock, incep in PAIRS
                        if stock in medians and incep in medians}}
    emit_json(result, args.work / f"time_{args.variant}.json")


def _without_spinning(backend, path: str, threads: int) -> None:
    """An ONNX Runtime session rebuilt with its intra-op threads not spinning after each run.

    ORT's threads spin-wait after every run by default (`session.intra_op.allow_spinning`); with the 8 models timed
    in turn, one session's spinning threads take the cores of the next model's run. Measured here: ratios of 0.85 to
    1.39 and every model 1.5-2x slower than alone, depending on which model follows which; without spinning 0.95-1.02.
    A deployed model runs one session and never meets this, so the timing turns spinning off and keeps the rest of
    Ultralytics' session (same file, providers)."""
    inner = getattr(backend, "backend", backend)
    session = getattr(inner, "session", None)
    if session is None or not type(session).__module__.startswith("onnxruntime"):
        return
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    inner.session = onnxruntime.InferenceSession(path, options, providers=session.get_providers())


def run_table(args) -> None:
    """The compact table, one CSV row per variant and pair: exports / loads (stock, Inception), max abs difference to
    PyTorch FP32 of boxes (px) and scores as the runtime runs by default (and OpenVINO at f32), latency ratio."""
    import csv
    import io

    cols = ["variant", "runtime", "runs_at", "pair", "exported", "loaded", "boxes_diff_stock", "boxes_diff_incep",
            "scores_diff_stock", "scores_diff_incep", "f32_boxes_diff_stock", "f32_boxes_diff_incep",
            "latency_incep_over_stock"]
    rows = []
    pytorch = args.work / "time_pytorch.json"
    if pytorch.is_file():
        ratio = json.loads(pytorch.read_text())["ratio"]
        rows += [["pytorch", f"torch {torch.__version__}", "fp32", Path(i).stem] + [""] * 8 + [ratio.get(i, "")]
                 for _, i in PAIRS]
    for variant in VARIANTS:
        exp = args.work / f"export_{variant}.json"
        if not exp.is_file():
            continue
        done = json.loads(exp.read_text())
        timed = args.work / f"time_{variant}.json"
        ratio = json.loads(timed.read_text()).get("ratio", {}) if timed.is_file() else {}
        if "skipped" in done:
            rows.append([variant, done["skipped"]] + [""] * (len(cols) - 2))
            continue
        for stock, incep in PAIRS:
            s_, i_ = done["models"][stock], done["models"][incep]
            runs_at = str(i_.get("runtime_precision", "")).removeprefix("<Type: '").removesuffix("'>")
            if VARIANTS[variant].get("quantize") == 8:  # random weights calibrated on real images: no parity to
                s_, i_ = ({k: v for k, v in r.items() if "diff" not in k} for r in (s_, i_))  # read; AP says it
            rows.append([variant, done["runtime"], runs_at, Path(incep).stem, _both(s_, i_, "exported"),
                         _both(s_, i_, "loaded"),
                         s_.get("max_abs_diff_boxes", ""), i_.get("max_abs_diff_boxes", ""),
                         s_.get("max_abs_diff_scores", ""), i_.get("max_abs_diff_scores", ""),
                         s_.get("f32_max_abs_diff_boxes", ""), i_.get("f32_max_abs_diff_boxes", ""),
                         ratio.get(incep, "")])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([cols, *rows])
    print(buf.getvalue())
    if args.out:
        atomic_write_bytes(args.out, buf.getvalue())


def _both(stock: dict, incep: dict, key: str) -> str:
    return "/".join("yes" if r.get(key) else "no" for r in (stock, incep))


def main(argv: list[str] | None = None) -> int:
    # MNN's converter imports its telemetry module, which runs `pip install aliyun-log-python-sdk` (protobuf < 6,
    # which breaks onnx) with the first pip on PATH when that is missing; blocked, the converter runs without it.
    sys.modules.setdefault("MNN.tools.utils.log", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["export", "time", "table"])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for checkpoints and exports")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--variant", default="pytorch", help="time: the runtime to time ('pytorch' or a variant)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (TorchScript, PyTorch)")
    parser.add_argument("--calib", help="INT8 calibration data YAML")
    parser.add_argument("--calib-split", default="train")
    parser.add_argument("--calib-images", type=int, default=32, help="calibration images (Ultralytics' fraction)")
    parser.add_argument("--again", action="store_true", help="export variants already done again")
    parser.add_argument("--out", type=Path, help="table: the JSON to write")
    args = parser.parse_args(argv)
    {"export": run_export, "time": run_time, "table": run_table}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
