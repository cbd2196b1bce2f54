"""The lab's model YAMLs, written as a base model plus the rows that differ.

Every model here is an ablation arm of the CPU protocol (or its YOLO11 form): a stock Ultralytics YAML, or a product
YAML of model_yamls/, with a few rows replaced (row index over backbone + head, as Ultralytics counts layers).
`yaml_path(name)` writes the full YAML into experiments/model_yamls/ (generated, not tracked) and returns the path that
`yolo train model=...`, the protocol and scripts/ take.

    python -m experiments.models            # write them all and list them
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from yolo_incep.files import atomic_write_bytes
from yolo_incep.plugin import MODEL_YAMLS

from . import heads  # noqa: F401  (the heads the rows name are registered with the plugin)

OUT = Path(__file__).resolve().parent / "model_yamls"

# yolov8-p2.yaml rows (backbone 0-9, head 10-28): stride-8 blocks, stride-16/32 blocks, the P2 neck block, the head
INCEP_8 = {4: [-1, 6, "C2fIncep", [256, True]], 21: [-1, 3, "C2fIncep", [256]]}  # backbone P3 and P3 head blocks
INCEP_16_32 = {6: [-1, 6, "C2fIncep", [512, True]], 8: [-1, 3, "C2fIncep", [1024, True]]}
NECK_1X1 = {18: [-1, 1, "Conv", [128, 1, 1]]}  # the P2 neck block as a 1x1 Conv (stock: C2f)


def p2_head(name: str) -> dict[int, list]:
    """yolov8-p2's Detect row with another head class."""
    return {28: [[18, 21, 24, 27], 1, name, ["nc"]]}


@dataclass(frozen=True)
class LabModel:
    """A base YAML (a stock name or one of model_yamls/) and the rows that replace its rows; what it asks."""

    base: str
    rows: dict[int, list]
    question: str


P2 = "yolov8-p2.yaml"
MODELS: dict[str, LabModel] = {
    # the Inception backbone (strides 8-32) in a P2 model: which head and P2 neck block it needs
    "yolov8-incep-p2-detectincep": LabModel(P2, {**INCEP_8, **INCEP_16_32, **NECK_1X1, **p2_head("DetectIncep")},
                                            "the first shipped P2 model: Inception backbone, DetectIncep, 1x1 P2 neck"),
    "yolov8-incep-p2-stockhead": LabModel(P2, {**INCEP_8, **INCEP_16_32},
                                          "the Inception backbone under stock P2's neck and head"),
    "yolov8-incep-p2-narrowhead": LabModel(P2, {**INCEP_8, **INCEP_16_32, **NECK_1X1, **p2_head("DetectNarrow")},
                                           "the Inception backbone with the narrow dense head"),
    "yolov8-incep-p2-p45-narrowhead": LabModel(P2, {**INCEP_16_32, **NECK_1X1, **p2_head("DetectNarrow")},
                                               "Inception blocks at strides 16-32 only, narrow dense head"),
    "yolov8-incep-lighthead": LabModel("yolov8.yaml", {
        4: [-1, 6, "C2fIncep", [256, True]], 6: [-1, 6, "C2fIncep", [512, True]], 8: [-1, 3, "C2fIncep", [1024, True]],
        15: [-1, 3, "C2fIncep", [256]], 22: [[15, 18, 21], 1, "DetectIncep", ["nc"]]},
        "yolov8-incep with DetectIncep (no P2): the cheap head's cost without a stride-4 branch"),
    # stock C2f blocks, one head part changed at a time (against stock yolov8-p2)
    "yolov8-p2-incephead": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncep")},
                                    "stock P2 with only DetectIncep and the 1x1 P2 neck block"),
    "yolov8-p2-incephead-deep": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncep2")},
                                         "two depthwise-separable layers per branch"),
    "yolov8-p2-incephead-c2f": LabModel(P2, p2_head("DetectIncep"), "the stock C2f P2 neck block"),
    "yolov8-p2-incephead-cls1": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncepCls1")},
                                         "one dense 3x3 conv in the class branch"),
    "yolov8-p2-incephead-cls2": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncepCls2")},
                                         "the stock dense class branch"),
    "yolov8-p2-incephead-box2": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncepBox2")},
                                         "the stock dense box branch"),
    "yolov8-p2-incephead-wide": LabModel(P2, {**NECK_1X1, **p2_head("DetectIncepWide")},
                                         "64 hidden channels at every stride (32 at P2)"),
    "yolov8-p2-incephead-c2f-cls1": LabModel(P2, p2_head("DetectIncepCls1"),
                                             "C2f P2 neck block and one dense class conv together"),
    "yolov8-p2-incephead-c2f-split": LabModel(P2, p2_head("DetectIncepCls1Split"),
                                              "as -c2f-cls1 with a stem per branch instead of a shared one"),
    "yolov8-p2-incephead-dense": LabModel(P2, p2_head("DetectIncepDense"),
                                          "stock dense branches behind the Inception stem: stem or branches?"),
    "yolov8-p2-incephead-stemless": LabModel(P2, p2_head("DetectIncepStemless"),
                                             "no stem, two separable layers per branch at stock widths (control)"),
    "yolov8-p2-narrowhead": LabModel(P2, {**NECK_1X1, **p2_head("DetectNarrow")},
                                     "stock dense branches at most as wide as their input, 1x1 P2 neck (control)"),
    "yolov8-p2-narrowhead-c2f": LabModel(P2, p2_head("DetectNarrow"), "the narrow head on the C2f P2 neck block"),
    # YOLO11 forms of the first P2 designs (never trained): the product yolo11-incep-p2 plus rows
    "yolo11-incep-p2-stockhead": LabModel("yolo11-incep-p2.yaml", {
        4: [-1, 2, "C3k2Incep", [512, False, 0.25]], 22: [-1, 2, "C3k2Incep", [256, False]]},
        "the Inception backbone at strides 8-32 under stock P2's neck and head"),
    "yolo11-incep-p2-detectincep": LabModel("yolo11-incep-p2.yaml", {
        4: [-1, 2, "C3k2Incep", [512, False, 0.25]], 22: [-1, 2, "C3k2Incep", [256, False]],
        19: [-1, 1, "Conv", [128, 1, 1]], 29: [[19, 22, 25, 28], 1, "DetectIncep", ["nc"]]},
        "the first shipped YOLO11 P2 model: Inception backbone, DetectIncep, 1x1 P2 neck"),
}


def _base(name: str) -> dict:
    """The base model dict as its file says (no keys added): ours from model_yamls/, else Ultralytics' own."""
    if (MODEL_YAMLS / name).is_file():
        path = MODEL_YAMLS / name
    else:
        from ultralytics.utils.checks import check_yaml

        path = Path(check_yaml(name))
    return yaml.safe_load(path.read_text())


def model_dict(name: str) -> dict:
    """The full model dict of a lab model (no scale chosen)."""
    spec = MODELS[name]
    d = _base(spec.base)
    n_backbone = len(d["backbone"])
    for i, row in spec.rows.items():
        section, j = ("backbone", i) if i < n_backbone else ("head", i - n_backbone)
        if not 0 <= j < len(d[section]):
            raise IndexError(f"{name}: row {i} is not a row of {spec.base}")
        d[section][j] = row
    return d


def write(name: str) -> Path:
    """Write one lab model's YAML (only if it changed) and return its path, without a scale letter."""
    spec = MODELS[name]
    header = (f"# Generated by experiments/models.py from {spec.base}, rows {sorted(spec.rows)} replaced; edit the "
              f"table there, not this file.\n# Asks: {spec.question}.\n\n")
    d = model_dict(name)
    rest = {k: v for k, v in d.items() if k not in {"backbone", "head"}}
    text = header + yaml.safe_dump(rest, sort_keys=False, default_flow_style=None, width=120)
    for section in ("backbone", "head"):  # one flow-style row a line, as Ultralytics writes them
        text += f"{section}:\n" + "".join(f"  - {yaml.safe_dump(r, default_flow_style=True, width=1000).strip()}\n"
                                         for r in d[section])
    path = OUT / f"{name}.yaml"
    atomic_write_bytes(path, text)  # only when it changed; a concurrent reader sees the old file or the new one
    return path


def yaml_path(name: str, scale: str = "n") -> Path:
    """The path of a lab model at `scale` (yolov8-p2-incephead -> .../yolov8n-p2-incephead.yaml), written first.

    Like Ultralytics' own names, the letter after the version picks the scale and the file without it is read."""
    path = write(name)
    stem, n = path.stem, len(path.stem.split("-")[0])
    return path.with_name(f"{stem[:n]}{scale}{stem[n:]}.yaml")


def main() -> int:
    for name in MODELS:
        print(write(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
