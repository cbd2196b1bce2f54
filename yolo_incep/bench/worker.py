"""One run of the GPU sitting, in its own process (started by sitting.py):

    python -m yolo_incep.bench.worker CONFIG.json NAME

It trains, predicts the val frames and keeps its run as every benchmark run is kept (runs.py), with the callbacks
that report its progress and apply the parent's plan of equal steps (steps.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import _bootstrap  # noqa: F401  (the plugin where no .pth installed it: the lent machine runs the checkout)
from .. import recipe
from ..errors import one_line
from ..files import atomic_write_bytes
from . import machine
from .steps import Control


def main(config_file: Path, name: str) -> int:
    """Train, predict and keep one run of the sitting."""
    machine.enter()
    import logging

    from ultralytics.utils import LOGGER

    from .grids import arm_from
    from .runs import Workspace, train_run

    for logger in (LOGGER, *LOGGER.handlers):  # YOLO_VERBOSE=False drops the progress bars, and warnings with them
        logger.setLevel(logging.WARNING)

    config = json.loads(config_file.read_text())
    control = Path(config["control"])
    run = config["runs"][name]
    budget = recipe.Budget(**config["budget"])
    ws = Workspace(Path(config["root"]), budget, Path(config["kept"]))
    arm = arm_from(run["arm"])
    ctl = Control(control, name, config)
    ctl.report(state="starting", pid=os.getpid())
    try:
        machine.no_downloads(lambda line: print(line, flush=True))
        record = train_run(ws, arm, run["seed"], Path(config["data"]), callbacks=ctl.attach, fresh=True)
    except BaseException as e:
        ctl.report(state="failed", error=one_line(e))
        raise
    record |= {"steps": ctl.step, "images_seen": ctl.step * budget.batch, "gpu_peak_gib": ctl.gpu_peak_gib}
    atomic_write_bytes(ws.kept(arm, run["seed"]) / "done.json", json.dumps(record, indent=1))
    ctl.report(state="done", step=ctl.step)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
