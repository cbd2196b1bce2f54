"""GPU speed of stock YOLO models against their Inception versions, as ratios from one run: training throughput and
fused fp16 inference latency, each in contiguous (NCHW) and channels-last (NHWC) memory format; JSON.

Training: the step Ultralytics' trainer runs (AMP autocast, its own detection loss, GradScaler, gradient clipping at
10, SGD, EMA update) on synthetic tensors already on the device: it measures the model, not the data pipeline.
Inference: fused eval models in fp16 at batch 1 and 32. Each pair is timed interleaved (stock, Inception, stock, ...)
so that both see the same clocks and load. A pair whose model YAML does not exist is listed under "skipped".
The JSON is rewritten after every pair ("complete": false until the end), so a run cut short keeps what it measured.

The GPU sitting runs it first, for at most 2 minutes (estimated 1-2 on an H100 or H200 for two pairs). Alone:
    python -m yolo_incep.bench.gpu_speed --device 0 --out OUT/gpu_speed.json
Rehearsal on any CPU (seconds; same code path, tiny sizes, fp32, modules the GPU machine lacks blocked):
    python -m yolo_incep.bench.gpu_speed --rehearse --out /tmp/gpu_speed.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError, one_line
from ..files import atomic_write_bytes
from . import machine

PROG = "python -m yolo_incep.bench.gpu_speed"

PAIRS = [("yolov8n.yaml", "yolov8n-incep.yaml"), ("yolo26n.yaml", "yolo26n-incep.yaml")]
FORMATS = ("contiguous", "channels_last")
AMP = {"fp16": "float16", "bf16": "bfloat16"}  # torch's dtype names. torch is imported only inside functions: under
# --rehearse the import block must be in place before it (torch imports optional modules it finds, pydot, ...)


@dataclass(frozen=True)
class Settings:
    """What one run measures; the rehearsal differs only in sizes, device and precision."""

    device: str
    imgsz: int
    train_batch: int
    infer_batches: tuple[int, ...]
    steps: int  # timed training steps per model and memory format (interleaved repetitions)
    reps: int  # timed inference repetitions per model, memory format and batch
    warmup: int  # untimed calls of each variant first (cuDNN autotuning, clocks, GradScaler's first scale)
    amp: str | None  # autocast dtype of training; None: fp32
    half: bool  # fp16 inference
    deterministic: bool  # deterministic algorithms as Ultralytics' trainer sets them by default; else cudnn.benchmark
    nc: int
    rehearsal: bool


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive.__name__ = "positive integer"  # argparse names the expected type after the function


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="0", help="CUDA index or cpu (default 0)")
    parser.add_argument("--imgsz", type=positive, default=640)
    parser.add_argument("--batch", type=positive, default=64, help="training batch (default 64)")
    parser.add_argument("--infer-batch", type=positive, nargs="+", default=[1, 32], help="default 1 32")
    parser.add_argument("--steps", type=positive, default=20, help="timed training steps per variant (default 20)")
    parser.add_argument("--reps", type=positive, default=30, help="timed inference repetitions (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each variant first (default 5)")
    parser.add_argument("--amp", choices=sorted(AMP), default="fp16", help="training autocast dtype (default fp16, "
                        "Ultralytics' amp=True)")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms, as Ultralytics' "
                        "trainer runs by default (deterministic=True); default: cudnn.benchmark")
    parser.add_argument("--nc", type=positive, default=10, help="classes (default 10, VisDrone's)")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("STOCK", "INCEP"),
                        help="a stock and an Inception model YAML (repeatable; default: yolov8n and yolo26n pairs)")
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically, after every pair)")
    parser.add_argument("--quiet", action="store_true", help="write the JSON to --out only, not also to stdout")
    parser.add_argument("--rehearse", action="store_true", help="CPU (1 thread), imgsz 32, batch 2, inference "
                        "batches 1 2, 1 step/rep, no warm-up, fp32, modules the GPU machine lacks blocked: checks "
                        "the code path in seconds")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"argument --warmup: must be >= 0, got {args.warmup}")
    if args.imgsz % 32:
        parser.error(f"argument --imgsz: must be a multiple of 32 (the largest stride), got {args.imgsz}")
    for stock, incep in args.pair or ():
        if stock == incep:
            parser.error(f"argument --pair: {stock} twice; a pair is a stock and another (Inception) model")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    import torch

    if args.rehearse:
        torch.set_num_threads(1)  # a loaded shared CPU: threads that spin waiting for a descheduled peer crawl
        return Settings("cpu", 32, 2, (1, 2), 1, 1, 0, None, False, args.deterministic, args.nc, True)
    device = select(args.device)
    cuda = device.startswith("cuda")  # AMP and fp16 inference are GPU features; on CPU both would only be slower
    return Settings(device, args.imgsz, args.batch, tuple(args.infer_batch), args.steps, args.reps, args.warmup,
                    args.amp if cuda else None, cuda, args.deterministic, args.nc, False)


def select(device: str) -> str:
    """'0' -> 'cuda:0', 'cpu' -> 'cpu'; a device this machine lacks is an InputError."""
    import torch

    name = "cpu" if device == "cpu" else f"cuda:{device}" if device.isdigit() else device
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device {device}: not a torch device ({e})") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise InputError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    if dev.type not in {"cuda", "cpu"}:
        raise InputError(f"--device {device}: only CUDA or cpu")
    return str(dev)


def synthetic_batch(batch: int, imgsz: int, nc: int, device: torch.device, boxes: int = 8) -> dict:
    """A training batch as Ultralytics' collate makes it: images in [0, 1], and per box its image index, class and
    normalized xywh; `boxes` mid-sized random boxes per image (the assigner's work grows with them)."""
    import torch

    g = torch.Generator().manual_seed(0)
    n = boxes * batch
    xy, wh = torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.15 + 0.02
    return {"img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
            "batch_idx": torch.arange(batch).repeat_interleave(boxes).float().to(device),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float().to(device),
            "bboxes": torch.cat((xy, wh), 1).to(device)}


def train_step(model, s: Settings, channels_last: bool):
    """One optimizer step of Ultralytics' trainer (BaseTrainer's forward/backward and optimizer_step), data aside."""
    import torch

    from ultralytics.cfg import get_cfg
    from ultralytics.utils.torch_utils import ModelEMA

    device = torch.device(s.device)
    model = copy.deepcopy(model).to(device).train()
    if channels_last:  # as the trainer does on CUDA by default: the weights only, the input stays NCHW
        model = model.to(memory_format=torch.channels_last)
    model.args = get_cfg()  # the loss gains (box, cls, dfl) and, for YOLO26's end-to-end loss, the epoch count
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=s.amp == "fp16")
    ema = ModelEMA(model)
    data = synthetic_batch(s.train_batch, s.imgsz, s.nc, device)

    def run():
        with torch.autocast(device.type, dtype=getattr(torch, AMP[s.amp]) if s.amp else None,
                            enabled=s.amp is not None):
            loss, _ = model.loss(data)
        scaler.scale(loss.sum()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        ema.update(model)

    return run


def timed(fns: dict, reps: int, s: Settings) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved, after `s.warmup` untimed calls of each."""
    import torch

    from ..cost import interleaved_medians

    device = torch.device(s.device)
    for fn in fns.values():
        for _ in range(s.warmup):
            fn()
    return interleaved_medians(fns, reps, device)


def peak_gib(fn, s: Settings) -> float | None:
    """Peak GPU memory of one call (what concurrent training processes sharing the GPU must fit in); None on CPU."""
    import torch

    if not s.device.startswith("cuda"):
        return None
    torch.cuda.synchronize(s.device)
    torch.cuda.reset_peak_memory_stats(s.device)
    fn()
    torch.cuda.synchronize(s.device)
    return round(torch.cuda.max_memory_allocated(s.device) / 2**30, 2)


def ratios(incep: dict, stock: dict) -> dict:
    """incep / stock of every number in two dicts of the same shape."""
    out = {}
    for k, v in stock.items():
        if isinstance(v, dict):
            out[k] = ratios(incep[k], v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v:
            out[k] = round(incep[k] / v, 3)
    return out


def best(per_format: dict[str, float], key=min) -> dict:
    """Each format's figure, the better format's name, and the better figure."""
    fmt = key(FORMATS, key=lambda f: per_format[f])
    return {**per_format, "faster": fmt, "best": per_format[fmt]}


def bench_pair(models: dict, s: Settings) -> tuple[dict, dict]:
    """Absolute figures per model and incep/stock ratios of one pair {stock: model, incep: model}, timed
    interleaved."""
    import torch

    from ..cost import fused_forward, model_cost

    stock_name, incep_name = models
    figures = {}
    for name, m in models.items():
        params, gflops = model_cost(m, s.imgsz)
        figures[name] = {"params": params, f"gflops_{s.imgsz}": gflops}
    train = {(n, f): train_step(m, s, f == "channels_last") for n, m in models.items() for f in FORMATS}
    med = timed(train, s.steps, s)
    peaks = {n: peak_gib(train[n, "channels_last"], s) for n in models}  # after warm-up: no autotuning workspace
    del train
    if s.device.startswith("cuda"):
        torch.cuda.empty_cache()
    infer = {(n, f, b): fused_forward(m, s.imgsz, torch.device(s.device), b, s.half, f == "channels_last")
             for n, m in models.items() for f in FORMATS for b in s.infer_batches}
    med_inf = timed(infer, s.reps, s)
    for n in models:
        figures[n]["train_images_per_s"] = best({f: round(s.train_batch / med[n, f], 2) for f in FORMATS}, max)
        figures[n]["train_step_ms"] = {f: round(med[n, f] * 1e3, 2) for f in FORMATS}
        figures[n]["train_peak_gib"] = peaks[n]
        for b in s.infer_batches:
            figures[n][f"infer_ms_batch{b}"] = best({f: round(med_inf[n, f, b] * 1e3, 3) for f in FORMATS})
    ratio = ratios(figures[incep_name], figures[stock_name])
    return figures, {"stock": stock_name, "incep": incep_name, "incep_over_stock": ratio}


def build_pair(names: tuple[str, str], nc: int) -> tuple[dict, list[str]]:
    """The pair's models by name, and why any could not be built (a missing YAML skips the pair, it is no error)."""
    from ..cost import build_model

    models, missing = {}, []
    for name in names:
        try:
            models[name] = build_model(name, nc)
        except (FileNotFoundError, OSError) as e:
            missing.append(f"{name}: {one_line(e)}")
    return models, missing


def header(s: Settings) -> dict:
    import torch

    import ultralytics

    cuda = s.device.startswith("cuda")
    return {
        "module": "yolo_incep.bench.gpu_speed",
        "device": f"{s.device} ({torch.cuda.get_device_name(s.device)})" if cuda
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "ultralytics": ultralytics.__version__,
        "settings": {**asdict(s), "cudnn_benchmark": cuda and not s.deterministic,
                     "train_precision": s.amp or "fp32", "infer_precision": "fp16" if s.half else "fp32"},
        "note": "Synthetic tensors on the device, no data loader: these figures measure the models, not the data "
                "pipeline. Training step: autocast forward, Ultralytics' own loss (model.loss) on random boxes, "
                "GradScaler backward, unscale, clip_grad_norm 10, SGD (nesterov, momentum 0.937), EMA update; its "
                "'channels_last' converts the weights only, as the trainer does on CUDA. Inference: fused eval "
                "model, inference_mode, weights and input in the named format. Medians of interleaved repetitions "
                "after warm-up calls; incep_over_stock: ratios of figures from this run (images/s < 1 or ms > 1: "
                "Inception slower); 'best' compares each model at its faster format. train_peak_gib: peak CUDA "
                "memory of one channels-last training step.",
    }


def run(s: Settings, pairs: list[tuple[str, str]], out: Path | None) -> dict:
    import torch

    start = time.perf_counter()
    if s.deterministic:
        from ultralytics.utils.torch_utils import init_seeds

        init_seeds(0, deterministic=True)  # exactly what the trainer sets with its default deterministic=True
    else:
        torch.backends.cudnn.benchmark = True  # the fastest algorithm per convolution shape, autotuned in warm-up
    report = {**header(s), "complete": False, "models": {}, "pairs": [], "skipped": []}
    for stock, incep in pairs:
        models, missing = build_pair((stock, incep), s.nc)
        if missing:
            report["skipped"].append({"stock": stock, "incep": incep, "reason": "; ".join(missing)})
            continue
        figures, pair = bench_pair(models, s)
        report["models"].update(figures)
        report["pairs"].append(pair)
        report["seconds"] = round(time.perf_counter() - start, 1)
        print(f"{stock} vs {incep}: {pair['incep_over_stock']} ({report['seconds']} s)", file=sys.stderr, flush=True)
        if out is not None:  # what a run cut short by its time limit has measured so far
            atomic_write_bytes(out, json.dumps(report, indent=1) + "\n")
    report["complete"] = True
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rehearse:  # from here on, a module the GPU machine lacks fails the rehearsal, not the GPU minutes
        os.environ[machine.REHEARSAL_ENV] = "1"
    machine.enter()
    os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing here downloads: Ultralytics' online checks would only wait
    from ..cost import emit_json
    from ..plugin import install

    install()  # our layers for the model parser, also where no yolo_incep.pth runs at start-up (a bare checkout)
    from ultralytics.utils import LOGGER

    for handler in LOGGER.handlers:  # Ultralytics' messages to stderr: stdout carries the JSON alone
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
    try:
        s = settings_from(args)
        report = run(s, [tuple(p) for p in args.pair or PAIRS], args.out)
        if args.quiet and args.out:
            atomic_write_bytes(args.out, json.dumps(report, indent=1) + "\n")
        else:
            emit_json(report, args.out)
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
