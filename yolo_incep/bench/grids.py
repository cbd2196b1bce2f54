"""The benchmark's grids: arms (model configurations) x seeds, trained under one budget and compared.

The lab (experiments/) adds its ablation arms and its own grids with `register_grid`, and its arms may subclass
`GridArm` to build or train their models differently (the layer-scale study does).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GridArm:
    """One model configuration of a grid, trained once per seed; `versus` names another arm it is also compared
    with (its stock counterpart)."""

    name: str
    model: str
    seeds: tuple[int, ...] = (0,)
    versus: str | None = None

    def building(self) -> contextlib.AbstractContextManager:
        """The context the run's model is built in (a lab arm may change how blocks are built)."""
        return contextlib.nullcontext()

    def attach(self, yolo) -> None:
        """Add this arm's own trainer callbacks (none for a plain arm)."""

    def resumable(self) -> bool:
        """Whether an interrupted run of this arm may resume from its last.pt (else it trains anew)."""
        return True

    def settings(self) -> dict:
        """What a run's record says of its arm beyond name, model and seed (a lab arm adds its study settings)."""
        return {}

    def describe(self) -> dict:
        """The arm as bench.json lists it."""
        return asdict(self) | {"seeds": list(self.seeds)}


GRIDS: dict[str, tuple[GridArm, ...]] = {
    # Baseline first; then the Inception backbone, stock P2 and the product Inception P2 model, each against its stock
    # counterpart. The last keeps its historical arm name so that its kept runs still match: the product
    # yolov8n-incep-p2.yaml is that design (Inception blocks at strides 16-32 only, stock P2 neck and head) now.
    # The ablation arms and the layer-scale 'study' grid are the lab's (experiments/grids.py): `python -m
    # experiments.bench` registers them (register_grid) and runs this benchmark.
    "cpu": (GridArm("yolov8n", "yolov8n.yaml", (0, 1)), GridArm("yolov8n-incep", "yolov8n-incep.yaml", (0, 1)),
            GridArm("yolov8n-p2", "yolov8n-p2.yaml", (0, 1, 2)),
            GridArm("yolov8n-incep-p2-p45-stockhead", "yolov8n-incep-p2.yaml", (0, 1, 2), versus="yolov8n-p2"),
            # YOLO26: the recipe's fixed AdamW keeps MuSGD (optimizer=auto's pick past 10k steps) out
            GridArm("yolo26n", "yolo26n.yaml", (0, 1)), GridArm("yolo26n-incep", "yolo26n-incep.yaml", (0, 1),
                                                                versus="yolo26n"),
            GridArm("yolo26n-p2", "yolo26n-p2.yaml"),
            GridArm("yolo26n-incep-p2", "yolo26n-incep-p2.yaml", versus="yolo26n-p2")),
    "smoke": (GridArm("yolov8n", "yolov8n.yaml"), GridArm("yolov8n-incep", "yolov8n-incep.yaml")),
    # One timed sitting on one GPU (sitting.py), every run at once, most important first (a machine short of cores
    # or GPU memory drops runs from the end): the main pair, stock P2 and the product Inception P2 model, then
    # YOLO26's (its stock models are the baseline users start from today).
    "gpu": (GridArm("yolov8n", "yolov8n.yaml", (0, 1)), GridArm("yolov8n-incep", "yolov8n-incep.yaml", (0, 1)),
            GridArm("yolov8n-p2", "yolov8n-p2.yaml"),
            GridArm("yolov8n-incep-p2", "yolov8n-incep-p2.yaml", versus="yolov8n-p2"),
            GridArm("yolo26n", "yolo26n.yaml", (0, 1)), GridArm("yolo26n-incep", "yolo26n-incep.yaml", (0, 1),
                                                                versus="yolo26n"),
            GridArm("yolo26n-p2", "yolo26n-p2.yaml"),
            GridArm("yolo26n-incep-p2", "yolo26n-incep-p2.yaml", versus="yolo26n-p2")),
}


def register_grid(name: str, arms) -> None:
    """Add arms to grid `name`, or make it a grid, after the arms it has: how experiments/ adds its ablation arms.

    Registering an arm again (the same name and definition) does nothing; another arm under a taken name is an error.
    """
    grid = list(GRIDS.get(name, ()))
    taken = {a.name: a for a in grid}
    for arm in arms:
        if taken.get(arm.name, arm) != arm:
            raise ValueError(f"register_grid: grid {name!r} already has an arm {arm.name!r}: {taken[arm.name]}")
        if arm.name not in taken:
            grid.append(arm)
            taken[arm.name] = arm
    GRIDS[name] = tuple(grid)


def runs_of(grid) -> list[tuple[GridArm, int]]:
    """Every (arm, seed) of a grid, seed 0 of every arm first: a partial grid stays paired."""
    depth = max((len(a.seeds) for a in grid), default=0)
    return [(a, a.seeds[i]) for i in range(depth) for a in grid if i < len(a.seeds)]


def run_name(arm: str, seed: int) -> str:
    """A run's folder and process name, from its arm's name and its seed."""
    return f"{arm}-s{seed}"


def arm_record(arm: GridArm) -> dict:
    """An arm as a JSON record another process rebuilds it from (`arm_from`), its class (a lab arm's) included."""
    return {"class": f"{type(arm).__module__}:{type(arm).__qualname__}", **arm.describe()}


def arm_from(record: dict) -> GridArm:
    """The arm of an `arm_record`."""
    import importlib

    module, _, name = record["class"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    fields = {k: v for k, v in record.items() if k != "class"}
    return cls(**fields | {"seeds": tuple(fields["seeds"])})
