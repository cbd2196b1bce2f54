"""Benchmark the Inception mixer and MetaNeXt block against ConvNeXt-style and stock YOLO layers; prints JSON.

Shapes are those of the C2fIncep inner blocks of yolov8n/s at 640. Variants of one comparison are timed interleaved
(A B C A B C ...) so that load from other processes hits them alike; every figure is a median over repetitions and
every ratio compares medians from the same run. Usage: python scripts/bench_layers.py [--device cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from yolo_incep.cost import emit_json, interleaved_medians

# (model, stage stride) -> (channels of the inner blocks, side at 640); yolov8 widths 0.25 (n) and 0.5 (s)
STAGES = {
    "yolov8n": {4: (16, 160), 8: (32, 80), 16: (64, 40), 32: (128, 20)},
    "yolov8s": {4: (32, 160), 8: (64, 80), 16: (128, 40), 32: (256, 20)},
}


def forward_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Inference call: eval mode, no autograd."""
    module.eval()

    def run():
        with torch.inference_mode():
            return module(x)

    return run


def train_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Training call: forward and backward in train mode, input gradient included as inside a network."""
    module.train()
    x = x.detach().requires_grad_(True)

    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).float().sum().backward()

    return run


def mixers(dim: int) -> dict[str, nn.Module]:
    """Token mixers: ours, timm's split/cat reference, ConvNeXt's 7x7 depthwise conv, a 3x3 depthwise conv."""
    from timm.models.inception_next import InceptionDWConv2d as TimmMixer

    from yolo_incep.nn import InceptionDWConv2d

    ours = InceptionDWConv2d(dim)
    ref = TimmMixer(dim)
    ref.load_state_dict(ours.state_dict())
    return {
        "inception": ours,
        "inception_timm": ref,
        "dw7x7": nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
        "dw3x3": nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
    }


def blocks(dim: int, fused: bool) -> dict[str, nn.Module]:
    """Residual blocks: ours (fused for inference), timm's MetaNeXt, timm's ConvNeXt, Ultralytics' C2f Bottleneck."""
    from timm.models.convnext import ConvNeXtBlock
    from timm.models.inception_next import MetaNeXtBlock as TimmBlock
    from ultralytics.nn.modules import Bottleneck
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    from yolo_incep.nn import MetaNeXtBlock

    ours = MetaNeXtBlock(dim)
    ref = TimmBlock(dim)
    ref.load_state_dict(ours.state_dict())
    bottleneck = Bottleneck(dim, dim, shortcut=True, k=((3, 3), (3, 3)), e=1.0)  # as C2f builds it
    out = {"metanext": ours, "metanext_timm": ref, "convnext_timm": ConvNeXtBlock(dim), "bottleneck_yolo": bottleneck}
    if fused:  # inference: each block in the form its framework runs it after model.fuse()
        out["metanext_unfused"] = MetaNeXtBlock(dim).eval()
        out["metanext_unfused"].load_state_dict(ours.state_dict())
        ours.eval().fuse()
        for conv in (bottleneck.cv1, bottleneck.cv2):
            conv.eval()
            conv.conv = fuse_conv_and_bn(conv.conv, conv.bn)
            del conv.bn
            conv.forward = conv.forward_fuse
    return out


def bench_group(modules: dict[str, nn.Module], ours: str, shape: tuple[int, ...], mode: str, layout: str,
                reps: int, device: torch.device) -> dict[str, object]:
    """Time one group of interchangeable modules on one input; ratios are other/ours (> 1: ours is faster)."""
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
    make = forward_fn if mode == "forward" else train_fn
    fns = {name: make(m.to(device, memory_format=fmt), x) for name, m in modules.items()}
    med = interleaved_medians(fns, reps, device)
    return {
        "ms": {name: round(t * 1e3, 4) for name, t in med.items()},
        "speedup_of_" + ours: {name: round(t / med[ours], 3) for name, t in med.items() if name != ours},
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    """Every comparison over models, stages, batches, layouts and modes."""
    device = torch.device(args.device)
    results = []
    for model in args.models:
        for stride in args.strides:
            dim, side = STAGES[model][stride]
            side = side * args.imgsz // 640
            for batch in args.batches:
                for layout in args.layouts:
                    for mode in args.modes:
                        shape = (batch, dim, side, side)
                        row = {"model": model, "stride": stride, "shape": list(shape), "layout": layout, "mode": mode}
                        torch.manual_seed(0)
                        row["mixer"] = bench_group(mixers(dim), "inception", shape, mode, layout, args.reps, device)
                        row["block"] = bench_group(blocks(dim, mode == "forward"), "metanext", shape, mode, layout,
                                                   args.reps, device)
                        results.append(row)
                        print(json.dumps(row), flush=True) if args.verbose else None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "reps": args.reps,
        "imgsz": args.imgsz,
        "note": "median ms per call over interleaved repetitions (variants alternate within each repetition, so "
                "load from other processes on shared cores hits all alike); speedup = other's median / ours, same run. "
                "forward: eval + inference_mode, ours fused, YOLO Bottleneck Conv+BN fused; "
                "forward_backward: train mode, ours unfused.",
        "results": results,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--reps", type=int, default=9, help="timed repetitions per variant")
    parser.add_argument("--imgsz", type=int, default=640, help="image size the stage shapes derive from")
    parser.add_argument("--models", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--strides", nargs="+", type=int, default=[4, 8, 16, 32], choices=[4, 8, 16, 32])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--layouts", nargs="+", default=["channels_first", "channels_last"],
                        choices=["channels_first", "channels_last"])
    parser.add_argument("--modes", nargs="+", default=["forward", "forward_backward"],
                        choices=["forward", "forward_backward"])
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    parser.add_argument("--verbose", action="store_true", help="print each result row as it completes")


def main() -> None:
    """Parse arguments, run, print/write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    emit_json(run(args), args.out)


if __name__ == "__main__":
    main()
