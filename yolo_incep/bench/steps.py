"""One number of optimizer steps for runs trained side by side, whatever their speed (docs/design.md, "The GPU
sitting"): what each run reports (`read_progress`), how the parent times them and fixes the epochs (`Timing`, written
to `PLAN`), and the trainer callbacks that apply the plan (`Control`) or, in every run of a study, refuse a cut
batch (`same_batch`). Nothing here knows the runs' data or GPUs.

`YOLO_INCEP_SITTING_FAULT` injects faults for the rehearsal's tests, comma-separated `KIND:RUN:STEP`: `kill` (the run
kills itself at that step), `hang` (it stops there and never reports again), `oom` (an out-of-memory error in that
step's forward pass, which Ultralytics answers by halving the batch).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

from ..files import atomic_write_bytes

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


def same_batch(batch: int):
    """A trainer callback for each epoch's start: the run stops, named, once Ultralytics has cut its batch (its
    out-of-memory handler halves it and retries), since its steps would no longer equal the other runs'."""
    def check(trainer) -> None:
        if trainer.batch_size != batch:
            raise BatchChanged(f"Ultralytics cut the batch from {batch} to {trainer.batch_size} after running out "
                               "of memory: this run's steps would no longer equal the others'; stopped")

    return check


class Control:
    """Trainer callbacks of one run: report progress, apply the parent's plan after epoch 1, refuse a halved batch,
    inject the rehearsal's faults."""

    def __init__(self, control: Path, name: str, config: dict):
        self.control, self.name, self.config = control, name, config
        self.batch = config["budget"]["batch"]
        self.step, self.t_step = 0, 0.0
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
        yolo.add_callback("on_train_epoch_start", same_batch(self.batch))
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

    def batch_end(self, trainer) -> None:
        self.step += 1  # nbs == batch: one optimizer step per batch
        self.t_step = now = time.time()
        if self.step == 1 or now - self.written >= self.config["report_s"] or self.step == self.faults.get("hang"):
            self.report(step=self.step, t=now)
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
            self.report(state="waiting", step=self.step, t=self.t_step, gpu_peak_gib=self.gpu_peak_gib)
            epochs = self._wait_for_plan()
            # as Ultralytics re-plans for `time=`; epoch 1's rate (lf(0)) and the warm-up did not depend on the length
            if epochs != trainer.epochs:
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


class Timing:
    """Times the live runs over one common stretch of their first epoch (once each took `skip` steps; for at least
    `seconds` and two steps each), then fixes the epochs that the slowest finishes in the time left."""

    def __init__(self, skip: int, seconds: float, margin: float):
        self.skip, self.seconds, self.margin = skip, seconds, margin
        self.start: float | None = None
        self.origin: dict[str, tuple[int, float]] = {}  # each run's (step, time) when the timing began

    def plan(self, progress: dict[str, dict], left_s: float, max_epochs: int, now: float) -> dict | None:
        """None until every run in `progress` (the live ones) is timed; then {"epochs", "steps", "steps_per_epoch",
        "step_s"}: the most whole epochs, at least 1, at most `max_epochs`, that every run finishes within
        `margin` x `left_s` at its measured seconds a step."""
        if not progress:
            return None
        waiting = {n for n, g in progress.items() if g.get("state") == "waiting"}  # at its first epoch's end
        if self.start is None:
            if all(g.get("step", 0) >= self.skip or n in waiting for n, g in progress.items()):
                self.start = now
                self.origin = {n: (g["step"], g["t"]) for n, g in progress.items()}
            return None
        if now - self.start < self.seconds or not all(
                n in waiting or g.get("step", 0) >= self.origin[n][0] + 2 for n, g in progress.items()):
            return None
        step_s = {}
        for n, g in progress.items():
            s0, t0 = self.origin[n]
            # a run that reached its epoch's end before the timing began: its whole first epoch
            step_s[n] = (g["t"] - t0) / (g["step"] - s0) if g["step"] - s0 >= 2 else (g["t"] - g["t0"]) / g["step"]
        nb = max(g["steps_per_epoch"] for g in progress.values())
        fits = min(g["step"] + left_s * self.margin / max(step_s[n], 1e-6) for n, g in progress.items())
        epochs = max(1, min(max_epochs, math.floor(fits / nb)))
        return {"epochs": epochs, "steps": epochs * nb, "steps_per_epoch": nb,
                "step_s": {n: round(v, 3) for n, v in step_s.items()}}
