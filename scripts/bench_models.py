"""Benchmark stock YOLO models against their Inception versions: params, GFLOPs, fused latency in PyTorch, ONNX
Runtime and OpenVINO, train step; JSON.

Each pair is timed interleaved (stock, incep, stock, incep, ...) and compared by ratios of medians from the same run.
A model YAML that does not exist (yet) is reported under "skipped". On a machine shared with other work, run with
OMP_WAIT_POLICY=PASSIVE (ONNX Runtime then stops spinning too): spinning threads that wait for a descheduled peer
make every small op slow and ratios meaningless. Usage: python scripts/bench_models.py [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from yolo_incep.cost import build_model, emit_json, fused_forward, interleaved_medians, model_cost

PAIRS = [
    ("yolov8n.yaml", "yolov8n-incep.yaml"),
    ("yolo11n.yaml", "yolo11n-incep.yaml"),
    ("yolov8n-p2.yaml", "yolov8n-incep-p2.yaml"),
    ("yolov8n.yaml", "yolov8n-incep-p2.yaml"),  # issue 10's target: a P2 model at most 1.3x a plain yolov8n
    ("yolo11n.yaml", "yolo11n-incep-p2.yaml"),
]


def export_onnx(model, imgsz: int, folder: Path) -> tuple[Path, torch.Tensor]:
    """The fused model exported to ONNX as `yolo export` prepares it, and the input it is timed on."""
    from ultralytics.nn.modules import Detect
    from ultralytics.utils.export.engine import torch2onnx

    model = copy.deepcopy(model).fuse(verbose=False).eval()
    for m in model.modules():
        if isinstance(m, Detect):  # the exporter's settings: decoded (1, 4 + nc, anchors) output, static shapes
            m.export, m.format, m.dynamic = True, "onnx", False
    x = torch.randn(1, 3, imgsz, imgsz)
    path = folder / f"{len(list(folder.iterdir()))}.onnx"
    with torch.no_grad():
        torch2onnx(model, x, path, opset=17)
    return path, x


def onnx_latency_fn(model, imgsz: int, threads: int, folder: Path):
    """Batch-1 inference in ONNX Runtime (CPU provider) of the fused model."""
    import onnxruntime as ort

    path, x = export_onnx(model, imgsz, folder)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def openvino_latency_fn(model, imgsz: int, threads: int, folder: Path):
    """Batch-1 inference in OpenVINO (CPU plugin, f32 as Ultralytics' OpenVINO backend asks, latency hint) of the
    fused model's ONNX export, which OpenVINO reads as `yolo export format=openvino` converts it."""
    import openvino as ov

    path, x = export_onnx(model, imgsz, folder)
    config = {"INFERENCE_PRECISION_HINT": ov.Type.f32, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request, feed = compiled.create_infer_request(), x.numpy()
    return lambda: request.infer([feed])


def train_step_fn(model, batch: int, imgsz: int, device: torch.device):
    """One optimiser step: forward, Ultralytics' detection loss on synthetic boxes, backward, SGD update."""
    from ultralytics.cfg import get_cfg

    model = copy.deepcopy(model).to(device).train()
    model.args = get_cfg()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    n = 4 * batch  # four boxes per image
    data = {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(4).float().to(device),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float().to(device),
        "bboxes": (torch.rand(n, 4, generator=g) * 0.4 + 0.3).to(device),
    }

    def run():
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(data)
        loss.sum().backward()
        opt.step()

    return run


def describe(model) -> dict[str, float]:
    """Parameters and GFLOPs at 640 of the unfused model, counted as `yolo-incep compare` counts them."""
    params, gflops = model_cost(model, 640)
    return {"params": params, "gflops_640": gflops}


def bench_pair(stock_name: str, incep_name: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    """Static figures and interleaved timings of one stock/Inception pair."""
    models = {stock_name: build_model(stock_name, args.nc), incep_name: build_model(incep_name, args.nc)}
    row: dict[str, object] = {name: describe(m) for name, m in models.items()}
    timings = {"latency_ms": {k: fused_forward(m, args.imgsz, device) for k, m in models.items()}}
    with tempfile.TemporaryDirectory() as folder:  # sessions keep what they need: the files may go
        for key, fn, on in (("onnxruntime_ms", onnx_latency_fn, args.onnx),
                            ("openvino_ms", openvino_latency_fn, args.openvino)):
            if on:
                timings[key] = {k: fn(m, args.imgsz, args.threads, Path(folder)) for k, m in models.items()}
    if args.train_reps:
        timings["train_step_ms"] = {k: train_step_fn(m, args.train_batch, args.train_imgsz, device)
                                    for k, m in models.items()}
    for key, fns in timings.items():
        med = interleaved_medians(fns, args.train_reps if key == "train_step_ms" else args.reps, device)
        for name in models:
            row[name][key] = round(med[name] * 1e3, 2)
    stock, incep = row[stock_name], row[incep_name]
    row["incep_over_stock"] = {k: round(incep[k] / stock[k], 3) for k in ("params", "gflops_640", *timings)}
    return row


def exists(name: str) -> bool:
    """Whether a model YAML name resolves (ours in model_yamls/ or Ultralytics' own)."""
    try:
        build_model(name)
    except (FileNotFoundError, OSError):
        return False
    return True


def run(args: argparse.Namespace) -> dict[str, object]:
    """Benchmark every pair whose two YAMLs exist."""
    device = torch.device(args.device)
    results, skipped = [], []
    for stock, incep in args.pairs:
        if exists(stock) and exists(incep):
            results.append(bench_pair(stock, incep, args, device))
            print(results[-1], file=sys.stderr, flush=True)
        else:
            skipped.append([stock, incep])
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "torch": torch.__version__,
        "nc": args.nc or "the YAML's (80)",
        "latency": {"imgsz": args.imgsz, "batch": 1, "reps": args.reps},
        "train_step": {"imgsz": args.train_imgsz, "batch": args.train_batch, "reps": args.train_reps},
        "note": "medians of interleaved repetitions (stock and Inception alternate, so load from other processes on "
                "shared cores hits both alike); incep_over_stock: ratios of figures from this run (< 1: Inception "
                "lower). latency_ms: PyTorch, fused eval model, inference_mode. onnxruntime_ms: the fused model "
                "exported to ONNX (opset 17), CPU provider, same thread count. openvino_ms: that ONNX file in "
                "OpenVINO's CPU plugin, f32, latency hint, same thread count. Train step: forward, loss, backward, "
                "SGD step.",
        "results": results,
        "skipped": skipped,
    }


def main() -> None:
    """Parse arguments, run, print/write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--imgsz", type=int, default=640, help="latency input size")
    parser.add_argument("--nc", type=int, help="number of classes (default: the YAML's 80; VisDrone has 10, and "
                        "the stock class branch is max(P3 or P2 channels, nc) wide)")
    parser.add_argument("--reps", type=int, default=15, help="latency repetitions per model")
    parser.add_argument("--train-imgsz", type=int, default=640)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-reps", type=int, default=3, help="0: no train-step timing")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX Runtime timing")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false", help="skip the OpenVINO timing")
    parser.add_argument("--pairs", nargs=2, action="append", metavar=("STOCK", "INCEP"),
                        help="a stock and an Inception model YAML (repeatable); default: the yolov8n/yolo11n/P2 pairs")
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    args = parser.parse_args()
    args.pairs = args.pairs or PAIRS
    torch.set_num_threads(args.threads)
    emit_json(run(args), args.out)


if __name__ == "__main__":
    main()
