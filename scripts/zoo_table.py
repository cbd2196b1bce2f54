"""Print the model-zoo table: every product YAML of model_yamls/ at its smallest scale beside its stock counterpart.

The counterpart is the same YAML with each Inception block row put back to the stock block it mirrors; it is named
after the stock Ultralytics file when it equals one row for row (yolov8-incep-p2 -> yolov8n-p2), else "... with stock
blocks" (Ultralytics ships no yolo11-p2). The InceptionNeXt backbone has no block twin: it faces yolov8n.
Params and GFLOPs at 640, as Ultralytics counts. The lab's ablation models are in experiments/, not here.
Usage: python scripts/zoo_table.py
"""

from __future__ import annotations

import re

from ultralytics.nn.tasks import yaml_model_load

from yolo_incep.plugin import MODEL_YAMLS, model_scale
from yolo_incep.swap import build_stats, stock_file, stock_twin

BACKBONE_MODELS = {"yolov8-inceptionnext": "yolov8n"}  # the paper's backbone: faces the stock model it feeds


def rows() -> list[tuple[str, float, float, str, float, float]]:
    """(model, params M, GFLOPs, stock counterpart, its params M, its GFLOPs) for every product YAML."""
    out = []
    for path in sorted(MODEL_YAMLS.glob("*.yaml")):
        d = yaml_model_load(path)
        d["scale"] = model_scale(d)  # the name carries no letter: the first (smallest) scale
        name = re.sub(r"^(yolo(?:v)?\d+)", rf"\g<1>{d['scale']}", path.stem) if d["scale"] else path.stem
        if path.stem in BACKBONE_MODELS:
            label = BACKBONE_MODELS[path.stem]
            twin = yaml_model_load(f"{label}.yaml")
        else:
            twin = stock_twin(d)
            label = stock_file(path.stem, twin, d["scale"]) or f"{name} with stock blocks"
        (p, g), (sp, sg) = build_stats(d, d["scale"]), build_stats(twin, d["scale"])
        out.append((name, p / 1e6, g, label, sp / 1e6, sg))
    return out


def main() -> None:
    """Print the markdown table."""
    print("| YAML (smallest scale) | params (M) | GFLOPs@640 | stock counterpart | params (M) | GFLOPs@640 |")
    print("|---|---:|---:|---|---:|---:|")
    for name, p, g, label, sp, sg in rows():
        print(f"| {name} | {p:.2f} | {g:.1f} | {label} | {sp:.2f} | {sg:.1f} |")


if __name__ == "__main__":
    main()
