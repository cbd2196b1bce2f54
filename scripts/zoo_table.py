"""Print the README's model-zoo table: every model_yamls/ YAML at its smallest scale beside its stock counterpart.

The counterpart is the same YAML with each Inception block row put back to the stock block it mirrors, except for
YAMLs that differ from a stock file in more than block rows (the InceptionNeXt backbone, the DetectIncep head):
those face that stock file. Params and GFLOPs at 640, as Ultralytics counts.
Usage: python scripts/zoo_table.py
"""

from __future__ import annotations

from ultralytics.nn.tasks import yaml_model_load

from yolo_incep.plugin import MODEL_YAMLS, model_scale
from yolo_incep.swap import build_stats, stock_twin

STOCK_NAMES = {  # the stock file each twin equals, where Ultralytics ships one
    "yolov5-incep": "yolov5n", "yolov8-incep": "yolov8n",
    "yolov9t-incep": "yolov9t", "yolov9s-incep": "yolov9s", "yolov9c-incep": "yolov9c", "yolo11-incep": "yolo11n",
}
STOCK_FILES = {  # by name prefix: a YAML and its experiments ("<name>-...") face the same stock file
    "yolov8-inceptionnext": "yolov8n", "yolov8-incep-lighthead": "yolov8n", "yolov8-incep-p2": "yolov8n-p2",
    "yolov8-p2-incephead": "yolov8n-p2", "yolov8-p2-narrowhead": "yolov8n-p2",
}


def stock_file(stem: str) -> str | None:
    """The stock file a YAML faces: that of the longest STOCK_FILES name it equals or extends with "-..."."""
    names = [n for n in STOCK_FILES if stem == n or stem.startswith(n + "-")]
    return STOCK_FILES[max(names, key=len)] if names else None


def main() -> None:
    """Print the markdown table."""
    print("| YAML (smallest scale) | params (M) | GFLOPs@640 | stock counterpart | params (M) | GFLOPs@640 |")
    print("|---|---:|---:|---|---:|---:|")
    for path in sorted(MODEL_YAMLS.glob("*.yaml")):
        d = yaml_model_load(path)
        d["scale"] = model_scale(d)  # the name carries no letter: the first (smallest) scale
        name = path.stem.replace("-", f"{d['scale']}-", 1) if d["scale"] else path.stem
        if label := stock_file(path.stem):
            twin = yaml_model_load(f"{label}.yaml")
        else:
            twin, label = stock_twin(d), STOCK_NAMES.get(path.stem, f"{path.stem} with stock blocks")
        (p, g), (sp, sg) = build_stats(d, d["scale"]), build_stats(twin, d["scale"])
        print(f"| {name} | {p / 1e6:.2f} | {g:.1f} | {label} | {sp / 1e6:.2f} | {sg:.1f} |")


if __name__ == "__main__":
    main()
