"""The layer-scale study's arms and budget: yolov8n-incep built with other MetaNeXt layer-scale inits, and with its
gammas exempt from weight decay, trained by the benchmark (yolo_incep.bench) like any arm."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

from yolo_incep import recipe
from yolo_incep.bench.grids import GridArm

# The cpu budget cut to 2 epochs (592 steps), no sliced row.
BUDGET = replace(recipe.BUDGETS["cpu"], epochs=2, close_mosaic=0, slice=0)


@dataclass(frozen=True)
class StudyArm(GridArm):
    """An arm whose MetaNeXt blocks start at `layer_scale` (None: no layer scale, 'default': the class default) and
    whose gammas may be exempt from weight decay (`gamma_decay` False)."""

    layer_scale: float | None | str = "default"
    gamma_decay: bool = True  # Ultralytics decays every weight but biases and norm weights: gamma included

    def building(self):
        return layer_scale(self.layer_scale)

    def attach(self, yolo) -> None:
        if not self.gamma_decay:
            yolo.add_callback("on_pretrain_routine_end", exempt_gamma)

    def resumable(self) -> bool:
        return self.gamma_decay  # a moved gamma group would not match a fresh optimizer's

    def settings(self) -> dict:
        return {"layer_scale": self.layer_scale, "gamma_decay": self.gamma_decay}


@contextlib.contextmanager
def layer_scale(value: float | None | str):
    """Build MetaNeXt blocks with this layer-scale init (None: none) while the context is open."""
    from yolo_incep.nn.layers import MetaNeXtBlock

    if value == "default":
        yield
        return
    default = MetaNeXtBlock.ls_init_default
    MetaNeXtBlock.ls_init_default = value
    try:
        yield
    finally:
        MetaNeXtBlock.ls_init_default = default


def exempt_gamma(trainer) -> None:
    """Move every MetaNeXt layer scale from the decayed weight group to the undecayed norm-weight group."""
    gammas = {id(p) for n, p in trainer.model.named_parameters() if n.endswith(".gamma")}
    groups = trainer.optimizer.param_groups
    decayed = next(g for g in groups if g.get("param_group") == "weight")
    plain = next(g for g in groups if g.get("param_group") == "bn")
    plain["params"] += [p for p in decayed["params"] if id(p) in gammas]
    decayed["params"] = [p for p in decayed["params"] if id(p) not in gammas]
