"""One run of the GPU sitting or of a study spread over several devices, in its own process (started by sitting.py
or processes.py), or in a Ray task (cluster.py calls `study_run`):

    python -m yolo_incep.bench.worker CONFIG.json NAME

It trains, predicts the val split and keeps its run as every benchmark run is kept (runs.py); in a sitting with the
callbacks that report its progress and apply the parent's plan of equal steps, in a study with the check that its
batch (and so its steps) stays the budget's (steps.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import _bootstrap  # noqa: F401  (the plugin where no .pth installed it: the lent machine runs the checkout)
from .. import recipe
from ..errors import InputError, one_line
from ..files import atomic_write_bytes
from . import machine
from .steps import Control, same_batch


def study_config(ws, data: Path, runs: list, key: str) -> dict:
    """What a study's worker needs (JSON): the budget, train data, workspace and each run's arm and seed; `key`
    names the study's scratch on other machines (cluster.py)."""
    from dataclasses import asdict

    from .grids import arm_record, run_name

    return {"budget": asdict(ws.budget), "data": str(data), "eval_data": str(ws.eval_data), "root": str(ws.root),
            "kept": str(ws.out), "key": key,
            "runs": {run_name(a.name, seed): {"arm": arm_record(a), "seed": seed} for a, seed in runs}}


def study_run(config: dict, name: str) -> dict:
    """Train one run of a study (resumed when interrupted) and keep it; its record says where it ran."""
    import socket

    from ..files import path_lock
    from .grids import arm_from
    from .runs import Workspace, train_run

    run, budget = config["runs"][name], recipe.Budget(**config["budget"])
    # the data it is scored on, as a study's own (a preset's frames were prepared by the parent)
    ws = Workspace(Path(config["root"]), budget, Path(config["kept"]), Path(config["eval_data"]))
    arm = arm_from(run["arm"])
    with path_lock(ws.run_dir(arm, run["seed"])):  # another process training this run is refused, not joined
        record = train_run(ws, arm, run["seed"], Path(config["data"]),
                           callbacks=lambda yolo: yolo.add_callback("on_train_epoch_start", same_batch(budget.batch)))
    record |= {"host": socket.gethostname(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES") if budget.device != "cpu"
               else None}
    atomic_write_bytes(ws.kept(arm, run["seed"]) / "done.json", json.dumps(record, indent=1))
    return record


def main(config_file: Path, name: str) -> int:
    """Train, predict and keep one run of a study or of the sitting."""
    config = json.loads(config_file.read_text())
    if "control" not in config:  # a study's run
        try:
            study_run(config, name)
        except InputError as e:  # the line the parent reports it by
            print(f"{name}: error: {e}", flush=True)
            return 2
        return 0
    machine.enter()
    import logging

    from ultralytics.utils import LOGGER

    from .grids import arm_from
    from .runs import Workspace, train_run

    for logger in (LOGGER, *LOGGER.handlers):  # YOLO_VERBOSE=False drops the progress bars, and warnings with them
        logger.setLevel(logging.WARNING)

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
