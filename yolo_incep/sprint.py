"""`yolo-incep bench --budget gpu`: the whole grid in one timed sitting on one GPU, every arm with the same steps.

    yolo-incep bench --budget gpu --out $OUT              # on the GPU machine: at most --minutes (9), 4 files out
    yolo-incep bench --budget gpu --from $OUT --out DIR   # anywhere: the report with intervals, from those files
    yolo-incep bench --budget gpu --rehearse --out DIR    # here, on the CPU: the same path in ~2 minutes

The arms train at once, as separate processes sharing the GPU and the cores. Nobody knows beforehand how many steps
fit (12 processes share one GPU and 16 cores), so the first epoch measures it: every arm waits at the end of its
first epoch until the parent, from the slowest arm's epoch time and the time left, fixes the number of epochs for
all (`plan.json`); each arm then re-plans its learning-rate schedule for that length. Should time still run short,
the parent names one step at which every arm stops (`stop.json`), and no arm gets ahead of the slowest by more than
`LEAD` steps meanwhile, so the work stays equal either way. Each arm then predicts the untiled val frames and keeps
its run as `protocol` keeps runs (predictions, step log, record); the parent packs them into `kept_runs.zip`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import _bootstrap  # noqa: F401  (the plugin where no .pth installed it: the GPU machine runs the checkout)
from . import gpu_kit, recipe
from .errors import InputError
from .files import atomic_write_bytes

LEAD = 4  # steps an arm may run ahead of the slowest one still training
POLL_S = 0.02
OUT_FILES = ("kept_runs.zip", "bench.json", "log.txt")  # what comes back (the device tool returns at most 8 files)
FILE_LIMIT = 16 * 2**20  # per file, as the device tool returns them
LOG_TAIL = 200_000  # characters of each worker's log kept in log.txt


@dataclass(frozen=True)
class Sitting:
    """The clock of one sitting: how long it may take, and what is kept back for predicting and packing."""

    minutes: float
    reserve_s: float  # after training: last validation, checkpoint, val-frame predictions, packing
    plan_margin: float = 0.9  # share of the measured time left that the planned epochs may fill


SITTINGS = {"gpu": Sitting(minutes=9, reserve_s=100), "rehearsal": Sitting(minutes=2.2, reserve_s=45)}


def rehearsal_budget(budget: recipe.Budget) -> recipe.Budget:
    """The GPU budget shrunk for the 2-core CPU: the same path with tiny images, batches and epochs."""
    return replace(budget, imgsz=64, epochs=3, batch=4, nbs=4, device="cpu", amp=False, workers=0, cache=False,
                   compare_imgsz=128, slice=0)


# ---------------------------------------------------------------- the parent: prepare, launch, plan, stop, pack

def run(ws, grid, args: argparse.Namespace, budget_name: str) -> int:
    """Train every arm/seed of `grid` concurrently within the sitting; write OUT_FILES into `args.out`."""
    sitting = SITTINGS["rehearsal" if args.rehearse else "gpu"]
    if args.minutes is not None:
        sitting = replace(sitting, minutes=args.minutes)
    start = time.time()
    deadline = start + sitting.minutes * 60
    out = Path(args.out)
    control = ws.root / "sprint"
    _fresh(control, ws.out / "runs")
    log = _Log(control / "parent.log")
    log(f"sitting of {sitting.minutes} min on {ws.budget.device}; {sum(len(a.seeds) for a in grid)} runs")
    data = ws.prepare()
    _label_caches(data)
    log(f"data ready in {time.time() - start:.0f} s: {data}")
    runs = [(arm, seed) for arm in grid for seed in arm.seeds]
    cores = os.cpu_count() or 1
    # the cores are shared by every run: one torch thread and (on a GPU) one loader process each where they are few
    workers = max(1, cores // len(runs) - 1) if ws.budget.device != "cpu" else 0
    config = {"budget": asdict(ws.budget), "data": str(data), "root": str(ws.root), "out": str(ws.out),
              "control": str(control), "workers": workers, "threads": max(1, cores // len(runs)),
              "arms": {f"{a.name}-s{s}": {"name": a.name, "model": a.model, "seed": s} for a, s in runs}}
    atomic_write_bytes(control / "config.json", json.dumps(config, indent=1))
    procs = {name: _spawn(name, control, config["threads"]) for name in config["arms"]}
    plan = _supervise(procs, control, deadline - sitting.reserve_s, deadline, sitting, ws.budget, log)
    records = _pack(ws, config, plan, procs, out, args, budget_name, time.time() - start, log)
    failed = [r for r in records if r.get("failed")]
    log(f"done in {time.time() - start:.0f} s: {len(records) - len(failed)} of {len(records)} runs kept in {out}")
    return 0 if not failed else 1


def check_model(model: str) -> None:
    """Build a model YAML on the CPU (a second or so): a missing or broken YAML is named before anything trains."""
    from .cost import build_model

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            build_model(model, nc=10)
    except Exception as e:  # noqa: BLE001 - any build failure is the YAML's, and is named with it
        raise InputError(f"grid model {model}: does not build ({type(e).__name__}: {e})") from e


def _label_caches(data: Path) -> None:
    """Ultralytics' label caches of the train and val splits, written once here: every run would otherwise write
    the same `.cache` files at the same moment, and one could read another's half-written file."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    with contextlib.redirect_stdout(io.StringIO()):
        d = check_det_dataset(str(data))
        for split in ("train", "val"):
            YOLODataset(img_path=d[split], data=d, task="detect", augment=False)


def _fresh(control: Path, kept: Path) -> None:
    """Empty control and kept-runs folders (scratch of this sitting's --work): a sitting never reads the progress,
    plan or runs of an earlier one."""
    import shutil

    for folder in (control, kept):
        if folder.exists():
            shutil.rmtree(folder)
    (control / "progress").mkdir(parents=True)


def _refuse_other_runs(out: Path, files: dict[str, bytes]) -> None:
    """`--from` into a report folder that already keeps runs: only the very same files (the same sitting again)."""
    held = {str(p.relative_to(out)): p for p in (out / "runs").rglob("*") if p.is_file()} if (out / "runs").is_dir() \
        else {}
    other = sorted(n for n, p in held.items() if files.get(n) != p.read_bytes())
    if other:
        raise InputError(f"--out {out}: keeps runs of another sitting ({other[0]}, {len(other)} files); choose "
                         "another folder, so that the two never mix")


def _spawn(name: str, control: Path, threads: int) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1",
                        "PYTHONUNBUFFERED": "1", recipe.THREADS_ENV: str(threads)}
    with open(control / f"{name}.log", "w") as f:
        return subprocess.Popen([sys.executable, "-m", "yolo_incep.sprint", str(control / "config.json"), name],
                                stdout=f, stderr=subprocess.STDOUT, env=env)


def _progress(control: Path) -> dict[str, dict]:
    """Every run's last reported progress: {"step", "state" (train/done/failed), "epoch1_s" once measured}."""
    out = {}
    for p in (control / "progress").glob("*.json"):
        with contextlib.suppress(ValueError, OSError):  # written atomically, but a run may be replacing it
            out[p.stem] = json.loads(p.read_text())
    return out


def _supervise(procs, control: Path, train_end: float, deadline: float, sitting: Sitting, budget, log) -> dict:
    """Plan the epochs after the first one, stop every run at one step if time runs short; returns the plan."""
    plan: dict = {}
    stopped = False
    while any(p.poll() is None for p in procs.values()):
        now = time.time()
        for name, p in procs.items():  # a dead run must not hold the others in lock-step or at the barrier
            if p.poll() not in (None, 0) and _progress(control).get(name, {}).get("state") != "failed":
                _report(control, name, state="failed")
                log(f"{name}: exited with status {p.returncode} (log: {control / name}.log)")
        progress = _progress(control)
        live = {n: progress.get(n, {}) for n, p in procs.items() if p.poll() is None}
        if not plan and live and all("epoch1_s" in g for g in live.values()):
            epoch_s = max(g["epoch1_s"] for g in live.values())
            fit = math.floor((train_end - now) * sitting.plan_margin / epoch_s)
            epochs = max(1, min(budget.epochs, 1 + fit))
            steps = max(g["steps_per_epoch"] for g in live.values()) * epochs
            plan = {"epochs": epochs, "steps": steps, "epoch1_s": round(epoch_s, 1),
                    "planned_at_s": round(now - (deadline - sitting.minutes * 60), 1)}
            atomic_write_bytes(control / "plan.json", json.dumps(plan))
            log(f"plan: slowest first epoch {epoch_s:.1f} s -> {epochs} epochs, {steps} steps per run")
        if not stopped and now > train_end and any(g.get("state") == "train" for g in live.values()):
            step = max(g.get("step", 0) for g in live.values() if g.get("state") == "train")  # all within LEAD
            atomic_write_bytes(control / "stop.json", json.dumps({"step": step}))
            stopped = True
            log(f"time is short: every run stops at step {step}")
        if now > deadline - 15:  # the last seconds are for packing what exists
            for name, p in procs.items():
                if p.poll() is None:
                    p.kill()
                    _report(control, name, state="failed")
                    log(f"{name}: killed at the deadline")
            break
        time.sleep(0.5)
    for p in procs.values():
        p.wait()
    if stopped:
        plan["stopped_at_step"] = json.loads((control / "stop.json").read_text())["step"]
    return plan


def _pack(ws, config: dict, plan: dict, procs, out: Path, args, budget_name: str, seconds: float, log) -> list:
    """kept_runs.zip (each run's kept folder), bench.json (plan, records, settings), log.txt; sizes checked."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arm in config["arms"].items():
            kept = ws.out / "runs" / name
            done = kept / "done.json"
            if done.is_file():
                records.append(json.loads(done.read_text()))
                for f in sorted(kept.iterdir()):
                    z.write(f, f"runs/{name}/{f.name}")
            else:
                records.append({"arm": arm["name"], "seed": arm["seed"], "failed": True})
    atomic_write_bytes(out / "kept_runs.zip", buf.getvalue())
    from .cost import device_name
    from .protocol import versions

    bench = {"command": " ".join(["yolo-incep", "bench", "--budget", budget_name] + (["--rehearse"] if args.rehearse
                                                                                    else [])),
             "budget": budget_name, "rehearsal": bool(args.rehearse), "settings": recipe.budget_dict(ws.budget),
             "plan": plan, "seconds": round(seconds, 1), "device": device_name(ws.budget.device),
             "workers_per_run": config["workers"], "threads_per_run": config["threads"],
             "arms": [{"name": a["name"], "model": a["model"], "seed": a["seed"]} for a in config["arms"].values()],
             "runs": records, "versions": versions()}
    atomic_write_bytes(out / "bench.json", json.dumps(bench, indent=1))
    parts = [(Path(config["control"]) / "parent.log").read_text()]
    for name in config["arms"]:
        text = (Path(config["control"]) / f"{name}.log").read_text(errors="replace")
        parts.append(f"\n===== {name} (last {LOG_TAIL} characters) =====\n{text[-LOG_TAIL:]}")
    atomic_write_bytes(out / "log.txt", "".join(parts))
    for f in OUT_FILES:
        size = (out / f).stat().st_size
        if size > FILE_LIMIT:
            log(f"WARNING {out / f}: {size / 2**20:.1f} MiB, over the {FILE_LIMIT / 2**20:.0f} MiB a file may have")
    return records


class _Log:
    """Lines to stderr and to the parent's log file (which travels back in log.txt)."""

    def __init__(self, path: Path):
        self.path, self.t0 = path, time.time()

    def __call__(self, message: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] sprint: {message}"
        print(line, file=sys.stderr, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _report(control: Path, name: str, **fields) -> None:
    """Merge `fields` into a run's progress file (atomic: readers never see half of it)."""
    path = control / "progress" / f"{name}.json"
    current = {}
    with contextlib.suppress(ValueError, OSError):
        current = json.loads(path.read_text())
    atomic_write_bytes(path, json.dumps(current | fields))


# ---------------------------------------------------------------- the worker: one arm/seed in its own process

class _Control:
    """Trainer callbacks of one run: report steps, wait for the plan after epoch 1, keep lock-step, stop on time."""

    def __init__(self, control: Path, name: str):
        self.control, self.name, self.step = control, name, 0
        self.stop_step: int | None = None
        self.t_train = 0.0

    def attach(self, yolo) -> None:
        yolo.add_callback("on_pretrain_routine_end", self.no_polars)
        yolo.add_callback("on_train_start", self.train_start)
        yolo.add_callback("on_train_batch_end", self.batch_end)
        yolo.add_callback("on_train_epoch_end", self.epoch_end)

    @staticmethod
    def no_polars(trainer) -> None:
        # Ultralytics reads results.csv back with polars into every checkpoint it saves ("train_results"); polars'
        # 54 MB wheel cannot travel to the GPU machine, and nothing here reads that field.
        trainer.read_results_csv = dict

    def train_start(self, trainer) -> None:
        self.t_train = time.time()
        _report(self.control, self.name, state="train", step=0, steps_per_epoch=len(trainer.train_loader))

    def batch_end(self, trainer) -> None:
        self.step += 1  # nbs == batch: one optimizer step per batch
        _report(self.control, self.name, step=self.step)
        while True:  # lock-step: never more than LEAD steps ahead of the slowest run still training
            if self.stop_step is None and (self.control / "stop.json").is_file():
                self.stop_step = json.loads((self.control / "stop.json").read_text())["step"]
            if self.stop_step is not None:  # the parent's step is the furthest any run had: all can reach it
                trainer.stop = trainer.stop or self.step >= self.stop_step
                return
            others = [g for n, g in _progress(self.control).items() if n != self.name and g.get("state") == "train"]
            if not others or self.step <= min(g.get("step", 0) for g in others) + LEAD:
                return
            time.sleep(POLL_S)

    def epoch_end(self, trainer) -> None:
        if trainer.epoch != 0:
            return
        _report(self.control, self.name, epoch1_s=time.time() - self.t_train)
        plan_file = self.control / "plan.json"
        while not plan_file.is_file():  # the barrier: the parent plans once every run has measured its epoch
            time.sleep(0.1)
        epochs = json.loads(plan_file.read_text())["epochs"]
        if epochs != trainer.epochs:  # as Ultralytics re-plans for `time=`: a new schedule over the new length
            trainer.epochs = trainer.args.epochs = epochs
            trainer._setup_scheduler()
            trainer.scheduler.last_epoch = trainer.epoch


def worker(config_file: Path, name: str) -> int:
    """Train, predict and keep one run of the sitting (a child process of `run`)."""
    gpu_kit.block_if_rehearsing()
    from .protocol import GridArm, Workspace, train_run

    config = json.loads(config_file.read_text())
    control = Path(config["control"])
    arm_cfg = config["arms"][name]
    budget = replace(recipe.Budget(**config["budget"]), workers=config["workers"])
    ws = Workspace(Path(config["root"]), budget, Path(config["out"]))
    arm = GridArm(arm_cfg["name"], arm_cfg["model"], (arm_cfg["seed"],))
    ctl = _Control(control, name)
    try:
        record = train_run(ws, arm, arm_cfg["seed"], Path(config["data"]), callbacks=ctl.attach, fresh=True)
    except BaseException:
        _report(control, name, state="failed")
        raise
    _report(control, name, state="done", step=ctl.step)
    record |= {"steps": ctl.step, "images_seen": ctl.step * budget.batch}
    atomic_write_bytes(ws.kept(arm, arm_cfg["seed"]) / "done.json", json.dumps(record, indent=1))
    return 0


def unpack(src: Path, ws) -> tuple[list[dict], dict]:
    """The records and budget settings of a sitting's files (`--from`): kept_runs.zip unpacked into the report
    folder's runs/."""
    zip_file, bench_file = src / "kept_runs.zip", src / "bench.json"
    for f in (zip_file, bench_file):
        if not f.is_file():
            raise InputError(f"--from {src}: no {f.name} (the files `bench --budget gpu` writes: "
                             f"{', '.join(OUT_FILES)})")
    try:
        with zipfile.ZipFile(zip_file) as z:
            names = z.namelist()
            if any(Path(n).is_absolute() or ".." in Path(n).parts or not n.startswith("runs/") for n in names):
                raise InputError(f"{zip_file}: holds paths outside runs/: not a kept-runs archive")
            bench = json.loads(bench_file.read_text())
            runs, settings = bench["runs"], bench["settings"]
            _refuse_other_runs(ws.out, {n: z.read(n) for n in names if not n.endswith("/")})
            z.extractall(ws.out)
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--from {src}: unreadable sitting files ({type(e).__name__}: {e})") from e
    return [r for r in runs if not r.get("failed")], settings


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), sys.argv[2]))
