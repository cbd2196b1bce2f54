"""One run of the GPU sitting, in its own process (started by sitting.py):

    python -m yolo_incep.bench.worker CONFIG.json NAME

It trains, predicts the val frames and keeps its run as every benchmark run is kept (runs.py), and reports its
progress in a file the parent reads: its state, its step and when it was reached. At the end of the first epoch it
waits (at most until the sitting's deadline) for the parent's plan, the number of epochs every run trains, and
re-plans its learning-rate schedule for it before epoch 2 begins: Ultralytics' schedule is per epoch and its value
for epoch 1 does not depend on the length, so every run's schedule is as if the length had been known from the
start, warm-up included (its length, a third of an epoch, does not depend on the epochs either).

Ultralytics halves the batch of a first epoch that runs out of GPU memory and starts the epoch again; a run whose
batch changed stops (its steps would no longer be the others'), named with why.

`YOLO_INCEP_SITTING_FAULT` injects faults for the rehearsal's tests, comma-separated `KIND:RUN:STEP`: `kill` (the run
kills itself at that step), `hang` (it stops there and never reports again), `oom` (an out-of-memory error in that
step's forward pass, which Ultralytics answers by halving the batch).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from .. import _bootstrap  # noqa: F401  (the plugin where no .pth installed it: the lent machine runs the checkout)
from .. import recipe
from ..errors import one_line
from ..files import atomic_write_bytes
from . import machine

FAULT_ENV = "YOLO_INCEP_SITTING_FAULT"
PLAN = "plan.json"


def progress_file(control: Path, name: str) -> Path:
    return control / "progress" / f"{name}.json"


def read_progress(control: Path, name: str) -> dict:
    """A run's last report ({} before its first); written atomically, so never half of one."""
    try:
        return json.loads(progress_file(control, name).read_text())
    except (OSError, ValueError):
        return {}


class BatchChanged(RuntimeError):
    """Ultralytics changed the batch (after running out of memory): the run's steps are no longer the others'."""


class Control:
    """Trainer callbacks of one run: report progress, apply the parent's plan after epoch 1, refuse a halved batch,
    inject the rehearsal's faults."""

    def __init__(self, control: Path, name: str, config: dict):
        self.control, self.name, self.config = control, name, config
        self.batch = config["budget"]["batch"]
        self.step, self.t_step, self.t1 = 0, 0.0, None
        self.written = self.printed = 0.0
        self.gpu_peak_gib = None
        self.faults = {kind: int(step) for kind, run, step in
                       (f.split(":") for f in os.environ.get(FAULT_ENV, "").split(",") if f.count(":") == 2)
                       if run == name}
        self.state: dict = {}

    def report(self, **fields) -> None:
        self.state |= fields | {"seen": time.time()}
        atomic_write_bytes(progress_file(self.control, self.name), json.dumps(self.state))
        self.written = time.time()

    def attach(self, yolo) -> None:
        yolo.add_callback("on_pretrain_routine_end", self.pretrain_end)
        yolo.add_callback("on_train_start", self.train_start)
        yolo.add_callback("on_train_epoch_start", self.epoch_start)
        yolo.add_callback("on_train_batch_end", self.batch_end)
        yolo.add_callback("on_train_epoch_end", self.epoch_end)

    def pretrain_end(self, trainer) -> None:
        # Ultralytics reads results.csv back with polars into every checkpoint it saves ("train_results"); polars'
        # 54 MB wheel cannot travel to the lent machine, and nothing here reads that field.
        trainer.read_results_csv = dict
        if "oom" in self.faults:
            trainer.model.register_forward_pre_hook(self._oom)

    def _oom(self, module, args) -> None:
        if self.faults.get("oom") == self.step + 1:
            del self.faults["oom"]  # once: Ultralytics retries the epoch after it
            raise RuntimeError("CUDA out of memory (injected by the rehearsal's fault hook)")

    def train_start(self, trainer) -> None:
        nb = len(trainer.train_loader)
        self.report(state="train", step=0, steps_per_epoch=nb, batch=trainer.batch_size, t0=time.time())
        print(f"training {trainer.epochs} epoch(s) at most, {nb} steps an epoch, batch {trainer.batch_size}, "
              f"{trainer.train_loader.num_workers} loader worker(s), AMP {bool(trainer.amp)}, on {trainer.device}",
              flush=True)

    def epoch_start(self, trainer) -> None:
        if trainer.batch_size != self.batch:
            raise BatchChanged(f"Ultralytics cut the batch from {self.batch} to {trainer.batch_size} after running "
                               "out of memory: this run's steps would no longer equal the others'; stopped")

    def batch_end(self, trainer) -> None:
        self.step += 1  # nbs == batch: one optimizer step per batch
        self.t_step = now = time.time()
        if self.step == 1:
            self.t1 = now
        if self.step == 1 or now - self.written >= self.config["report_s"] or self.step == self.faults.get("hang"):
            self.report(step=self.step, t=now, t1=self.t1)
        if self.faults.get("kill") == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.faults.get("hang") == self.step:
            print(f"hanging at step {self.step} (injected by the rehearsal's fault hook)", flush=True)
            while True:
                time.sleep(60)
        if now - self.printed >= self.config["print_s"]:
            self.printed = now
            loss = "/".join(f"{float(v):.3f}" for v in trainer.loss_items.values())
            print(f"step {self.step}, epoch {trainer.epoch + 1}/{trainer.epochs}, loss {loss}", flush=True)

    def epoch_end(self, trainer) -> None:
        if trainer.device.type == "cuda":
            import torch

            self.gpu_peak_gib = round(torch.cuda.max_memory_reserved(trainer.device) / 2**30, 2)
        if trainer.epoch == 0:
            self.report(state="waiting", step=self.step, t=self.t_step, t1=self.t1, gpu_peak_gib=self.gpu_peak_gib)
            epochs = self._wait_for_plan()
            if epochs != trainer.epochs:  # as Ultralytics re-plans for `time=`: a new schedule over the new length
                trainer.epochs = trainer.args.epochs = epochs
                trainer._setup_scheduler()
                trainer.scheduler.last_epoch = trainer.epoch
            print(f"plan: {epochs} epoch(s), {epochs * self.state['steps_per_epoch']} steps", flush=True)
        final = trainer.epoch + 1 >= trainer.epochs
        self.report(state="finishing" if final else "train", step=self.step, t=self.t_step)

    def _wait_for_plan(self) -> int:
        plan = self.control / PLAN
        while not plan.is_file():  # the parent plans once every run has been timed, or stops this one
            if time.time() > self.config["deadline"]:
                raise TimeoutError("no plan from the parent by the sitting's deadline")
            time.sleep(0.1)
        return json.loads(plan.read_text())["epochs"]


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
