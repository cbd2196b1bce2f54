"""The lab's arms of the CPU protocol: the ablation arms of the 'cpu' grid and the layer-scale 'study' grid.

`register()` adds them to yolo_incep.bench.grids.GRIDS (register_grid), and the study's budget to the recipe's;
arm names are those of the kept runs in docs/results/, so finished runs are found and skipped. Each ablation arm
is compared with stock yolov8n-p2 (versus).
"""

from __future__ import annotations

import os

from yolo_incep import recipe
from yolo_incep.bench.grids import GridArm, register_grid

from . import study
from .models import yaml_path

# arm name -> (lab model, seeds), in the order they were trained; every arm faces stock P2
ABLATIONS = {
    "yolov8n-incep-p2": ("yolov8-incep-p2-detectincep", (0,)),  # the first P2 model, under its historical arm name
    "yolov8n-incep-p2-stockhead": ("yolov8-incep-p2-stockhead", (0, 1, 2)),
    "yolov8n-p2-incephead": ("yolov8-p2-incephead", (0,)),
    "yolov8n-p2-incephead-deep": ("yolov8-p2-incephead-deep", (0,)),
    "yolov8n-p2-incephead-c2f": ("yolov8-p2-incephead-c2f", (0,)),
    "yolov8n-p2-incephead-cls1": ("yolov8-p2-incephead-cls1", (0,)),
    "yolov8n-p2-incephead-cls2": ("yolov8-p2-incephead-cls2", (0,)),
    "yolov8n-p2-incephead-box2": ("yolov8-p2-incephead-box2", (0,)),
    "yolov8n-p2-incephead-wide": ("yolov8-p2-incephead-wide", (0,)),
    "yolov8n-p2-incephead-c2f-cls1": ("yolov8-p2-incephead-c2f-cls1", (0, 1)),
    "yolov8n-p2-incephead-c2f-split": ("yolov8-p2-incephead-c2f-split", (0,)),
    "yolov8n-p2-incephead-dense": ("yolov8-p2-incephead-dense", (0,)),
    "yolov8n-p2-incephead-stemless": ("yolov8-p2-incephead-stemless", (0,)),
    "yolov8n-p2-narrowhead": ("yolov8-p2-narrowhead", (0, 1, 2)),
    "yolov8n-p2-narrowhead-c2f": ("yolov8-p2-narrowhead-c2f", (0,)),
    "yolov8n-incep-p2-narrowhead": ("yolov8-incep-p2-narrowhead", (0,)),
    "yolov8n-incep-p2-p45-narrowhead": ("yolov8-incep-p2-p45-narrowhead", (0,)),
}


def _model(name: str) -> str:
    """The lab YAML as the protocol records it: relative to the working folder when inside it."""
    path = yaml_path(name)
    try:
        return os.path.relpath(path) if path.is_relative_to(os.getcwd()) else str(path)
    except ValueError:  # another drive
        return str(path)


def ablation_arms() -> tuple[GridArm, ...]:
    return tuple(GridArm(arm, _model(model), seeds, versus="yolov8n-p2") for arm, (model, seeds) in ABLATIONS.items())


# The layer-scale study (592 steps, seed 0), most telling arms first (a partial study still compares paper vs large
# init): yolov8n-incep built with other MetaNeXt layer-scale inits, and with its gammas exempt from weight decay.
STUDY = (study.StudyArm("yolov8n", "yolov8n.yaml"),
         study.StudyArm("incep-ls1e-6", "yolov8n-incep.yaml", layer_scale=1e-6),
         study.StudyArm("incep-ls1", "yolov8n-incep.yaml", layer_scale=1.0),
         study.StudyArm("incep-ls0.1", "yolov8n-incep.yaml", layer_scale=0.1),
         study.StudyArm("incep-nols", "yolov8n-incep.yaml", layer_scale=None),
         study.StudyArm("incep-ls1e-6-nowd", "yolov8n-incep.yaml", layer_scale=1e-6, gamma_decay=False))


def register() -> None:
    """Add the ablation arms to the 'cpu' grid, the 'study' grid and its budget to the benchmark (idempotent)."""
    register_grid("cpu", ablation_arms())
    register_grid("study", STUDY)
    recipe.register_budget("study", study.BUDGET)
