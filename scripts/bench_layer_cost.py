"""Per-layer cost table: fused batch-1 CPU latency by layer group (backbone, neck, head; per stride), JSON.

Every model's layers are timed by forward hooks during whole-model calls; models alternate within each repetition
(A B C A B C ...), so load from other processes hits them alike, and each group's figure is the median over
repetitions of its per-call sum. Groups are `backbone/P<k>`, `neck/P<k>` (by the stride of the layer's output),
`head/P<k>` (the Detect head's modules for that stride: box and class branches, stems) and `head/decode` (the rest
of the head: concatenation, DFL, box decoding, sigmoid). On a shared machine run with OMP_WAIT_POLICY=PASSIVE (see
bench_models.py). Usage: python scripts/bench_layer_cost.py [--models A.yaml B.yaml] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from yolo_incep.cost import build_model, emit_json

MODELS = ["yolov8n.yaml", "yolov8n-incep.yaml", "yolov8n-p2.yaml", "yolov8n-incep-p2.yaml"]  # baseline first


class LayerClock:
    """Forward hooks that add each timed module's wall time to its group for the current call."""

    def __init__(self, model, imgsz: int):
        from ultralytics.nn.modules import Detect

        self.times: dict[str, float] = defaultdict(float)
        self.start: dict[int, float] = {}
        n_backbone = len(model.yaml["backbone"])
        for i, layer in enumerate(model.model):
            if isinstance(layer, Detect):
                self._watch(layer, lambda out: "head/decode")  # minus its per-stride modules, see take()
                per_level = [c for c in layer.children() if isinstance(c, nn.ModuleList) and len(c) == layer.nl]
                for level, s in enumerate(layer.stride.tolist()):
                    for branches in per_level:  # cv2, cv3 and whatever else a head keeps per stride
                        self._watch(branches[level], lambda out, s=s: f"head/P{round(math.log2(s))}")
            else:
                part = "backbone" if i < n_backbone else "neck"
                self._watch(layer, lambda out, part=part: f"{part}/P{round(math.log2(imgsz / out.shape[-1]))}")

    def _watch(self, module, group) -> None:
        def pre(m, args):
            self.start[id(m)] = time.perf_counter()

        def post(m, args, out):
            self.times[group(out)] += time.perf_counter() - self.start[id(m)]

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def take(self) -> dict[str, float]:
        """This call's seconds by group, the head branches taken out of `head/decode`."""
        t = dict(self.times)
        self.times.clear()
        t["head/decode"] -= sum(v for k, v in t.items() if k.startswith("head/P"))
        return t


def profile(names: list[str], imgsz: int, reps: int, nc: int | None = None) -> dict[str, dict[str, object]]:
    """Median ms by group and in total for each model, from interleaved fused batch-1 calls."""
    x = torch.randn(1, 3, imgsz, imgsz)
    models, clocks = {}, {}
    for name in names:
        models[name] = build_model(name, nc).fuse(verbose=False).eval()
        clocks[name] = LayerClock(models[name], imgsz)
    samples = {name: defaultdict(list) for name in names}
    with torch.inference_mode():
        for rep in range(reps + 2):  # two warm-up calls each
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                total = time.perf_counter() - start
                groups = clocks[name].take()
                if rep >= 2:
                    samples[name]["total"].append(total)
                    for k, v in groups.items():
                        samples[name][k].append(v)
    out = {}
    for name, s in samples.items():
        ms = {k: round(statistics.median(v) * 1e3, 2) for k, v in sorted(s.items(), key=lambda kv: _order(kv[0]))}
        out[name] = {"ms": ms, "share": {k: round(v / ms["total"], 3) for k, v in ms.items() if k != "total"}}
    return out


def _order(group: str) -> tuple[int, str]:
    """total, backbone, neck, head, then by stride."""
    part = group.split("/")[0]
    return ({"total": 0, "backbone": 1, "neck": 2, "head": 3}[part], group)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Profile the models and add ratios of every group to the first model's total."""
    results = profile(args.models, args.imgsz, args.reps, args.nc)
    base = results[args.models[0]]["ms"]["total"]
    for r in results.values():
        r["over_" + Path(args.models[0]).stem] = {k: round(v / base, 3) for k, v in r["ms"].items()}
    return {
        "device": platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "torch": torch.__version__,
        "imgsz": args.imgsz,
        "nc": args.nc or "the YAML's (80)",
        "reps": args.reps,
        "note": "PyTorch, fused eval model, batch 1, inference_mode; median ms per group over interleaved calls "
                "(group medians need not add up to the total median). over_<first model>: each figure divided by the "
                "first model's total.",
        "results": results,
    }


def main() -> None:
    """Parse arguments, run, print/write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, help="model YAMLs, baseline first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--nc", type=int, help="number of classes (default: the YAML's 80; VisDrone has 10)")
    parser.add_argument("--reps", type=int, default=15, help="timed calls per model")
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    emit_json(run(args), args.out)


if __name__ == "__main__":
    main()
